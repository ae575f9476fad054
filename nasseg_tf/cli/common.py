"""Helpers shared by the command-line tools."""

import logging
import sys


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
    from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    if not absl_flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)


def make_main(tool, body, errors=(ValueError, OSError), positional=False):
    """An absl ``main`` that runs ``body`` and turns expected errors into exit code 2.

    Args:
      tool: the tool's name, printed before error messages.
      body: ``body(FLAGS)`` (or ``body(FLAGS, args)`` with ``positional``) → exit code
        or None.
      errors: exception types that are user errors (bad input, missing files): they
        print ``<tool>: error: <message>`` instead of a traceback.
      positional: pass positional arguments on; otherwise reject them.
    """
    from absl import app, flags  # pylint: disable=import-outside-toplevel

    def main(argv):
        quiet_absl_info()
        if not positional and len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            code = body(flags.FLAGS, argv[1:]) if positional else body(flags.FLAGS)
        except errors as e:  # pylint: disable=catching-non-exception
            print(f"{tool}: error: {e}", file=sys.stderr)
            return 2
        return code or 0

    return main


def run_tool(doc, define_flags, main):
    """Console-script entry: usage text, flags, then ``absl.app.run(main)``."""
    from absl import app  # pylint: disable=import-outside-toplevel

    setup(doc)
    define_flags()
    app.run(main)
