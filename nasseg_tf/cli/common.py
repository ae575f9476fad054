"""What every command-line tool shares: start-up, flags, errors, the absl entry.

A tool is a module with a docstring (its ``--help`` text), a ``define_flags()`` and a
*body*: a plain function that takes the tool's flag values as keyword arguments (and
the positional arguments, for tools that take them). :func:`run_tool` defines the
flags, lists them under ``--help`` and runs the body; user errors become one line
``<tool>: error: <message>`` and exit status 2, never a traceback.
"""

import logging
import sys

from absl import flags

#: The names of the flags the running tool defined (set by :func:`run_tool`).
_TOOL_FLAGS = []


def define_gin_flags(flag_values=flags.FLAGS, model_dir_required=True):
    """``--gin_file``, ``--gin_bindings`` and ``--model_dir`` (gin-configured tools)."""
    flags.DEFINE_multi_string("gin_file", [], "gin files, applied in order.",
                              flag_values=flag_values)
    flags.DEFINE_multi_string("gin_bindings", [],
                              "gin bindings applied after the files, e.g. "
                              "\"Training.steps = 100\".", flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "The run's output folder.",
                        flag_values=flag_values)
    if model_dir_required:
        flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def setup(doc):
    """Common start-up of every tool.

    * ``--help`` prints ``doc``: absl reads the ``__main__`` module's docstring, which
      for a console script is the generated wrapper's (empty) one;
    * TensorFlow's Python logger only reports errors (its INFO lines about SavedModel
      signature names are long and say nothing to a user).
    """
    main = sys.modules.get("__main__")
    if main is not None:
        main.__doc__ = doc
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def quiet_absl_info():
    """Called at the start of a tool's ``main``: TensorFlow logs checkpoint and
    SavedModel chatter at absl INFO level; users see WARNING and above unless they ask
    for more with ``--verbosity``."""
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def make_main(tool, body, errors=(ValueError, OSError), positional=False):
    """An absl ``main`` that runs ``body`` and turns expected errors into exit code 2.

    Args:
      tool: the tool's name, printed before error messages.
      body: ``body(**flag_values)`` (or ``body(args, **flag_values)`` with
        ``positional``); ``flag_values`` are the values of the flags the tool defined.
        An int it returns is the exit code; anything else (a body that returns its
        result for library callers) means success.
      errors: exception types that are user errors (bad input, missing files): they
        print ``<tool>: error: <message>`` instead of a traceback.
      positional: pass positional arguments on; otherwise reject them.
    """
    from absl import app  # pylint: disable=import-outside-toplevel

    def main(argv):
        quiet_absl_info()
        if not positional and len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        values = {name: flags.FLAGS[name].value for name in _TOOL_FLAGS}
        try:
            code = body(argv[1:], **values) if positional else body(**values)
        except errors as e:  # pylint: disable=catching-non-exception
            print(f"{tool}: error: {e}", file=sys.stderr)
            return 2
        return code if isinstance(code, int) and not isinstance(code, bool) else 0

    return main


def run_tool(doc, define_flags, main):
    """Console-script entry: usage text, the tool's flags (listed by ``--help``), then
    ``absl.app.run(main)``."""
    from absl import app  # pylint: disable=import-outside-toplevel

    setup(doc)
    before = set(flags.FLAGS)
    define_flags()
    _TOOL_FLAGS[:] = sorted(set(flags.FLAGS) - before)
    for name in _TOOL_FLAGS:  # --help lists the tool's own flags, not only --helpfull
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    app.run(main)
