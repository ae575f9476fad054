"""What every command-line tool shares: start-up, flags, errors, the absl entry.

A tool is a module with a docstring (its ``--help`` text), a ``define_flags()`` and a
*body*: a plain function that takes the tool's flag values as keyword arguments (and
the positional arguments, for tools that take them). :func:`run_tool` defines the
flags, lists them under ``--help`` (exit status 0) and runs the body. User errors — a
bad or unknown flag, a missing required one, bad arguments, and the body's expected
errors (bad input, missing files) — become one line ``<tool>: error: <message>`` and
exit status 2, never a traceback or a usage dump.
"""

import logging
import os
import sys

from absl import flags

#: The names of the flags the running tool defined (set by :func:`run_tool`).
_TOOL_FLAGS = []


def define_gin_flags(flag_values=flags.FLAGS, model_dir_required=True):
    """``--gin_file``, ``--gin_bindings`` and ``--model_dir`` (gin-configured tools)."""
    flags.DEFINE_multi_string("gin_file", [], "gin files, applied in order: paths or "
                              "names of shipped recipes, e.g. "
                              "train/autodeeplab_s_cityscapes.gin.",
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


def one_line(error):
    """An error's message on one line (gin, absl and others write several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def fail(tool, error):
    """Prints ``<tool>: error: <message>`` to stderr; returns the exit status, 2."""
    print(f"{tool}: error: {one_line(error)}", file=sys.stderr)
    return 2


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
            return fail(tool, f"unexpected arguments: {' '.join(argv[1:])}")
        values = {name: flags.FLAGS[name].value for name in _TOOL_FLAGS}
        try:
            code = body(argv[1:], **values) if positional else body(**values)
        except (app.UsageError, *errors) as e:  # pylint: disable=catching-non-exception
            return fail(tool, e)
        return code if isinstance(code, int) and not isinstance(code, bool) else 0

    main.tool = tool
    return main


def parse_flags(tool, argv):
    """absl's flag parsing with the tools' conventions: ``--help`` (also ``-h``) exits
    with status 0; a bad, unknown or missing flag is one error line and status 2."""
    argv = ["--help" if arg == "-h" else arg for arg in argv]
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(tool, e))
    except SystemExit as e:
        # absl's help flags print the usage, then exit with status 1 during parsing.
        raise SystemExit(0 if e.code == 1 else e.code) from None


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
    tool = getattr(main, "tool", os.path.basename(sys.argv[0]))
    app.run(main, flags_parser=lambda argv: parse_flags(tool, argv))
