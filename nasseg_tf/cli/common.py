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
