"""Runs an installed console script as a user would: a fresh process in ``cwd``, the
script beside this interpreter, no ``PYTHONPATH`` (so the installed package is what
runs, not the source tree on the path), TensorFlow's C++ logs off."""

import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)


def run_console(tool, cwd, *args, timeout=900):
    """``subprocess.run`` of ``BIN/tool args`` in ``cwd``; output captured as text."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([os.path.join(BIN, tool), *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)
