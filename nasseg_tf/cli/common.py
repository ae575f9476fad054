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
