"""TensorFlow's start-up log lines, filtered by the level the user asked for.

TensorFlow 2.21 logs its start-up lines (oneDNN, CUDA probing, CPU features) before
absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not reach them, and it
logs them twice: once per native library it loads (the core and, a few seconds later,
the one behind ``tf.compat``). :func:`filtered_native_stderr` applies the level to
them: around the import it sends the process's stderr (file descriptor 2, where C++
writes) to a temporary file, then writes back every line the level keeps, in order.
Python warnings raised during the import come back the same way; nothing is lost if
the import fails.

Levels (``TF_CPP_MIN_LOG_LEVEL``, TensorFlow's meaning): 0 everything, 1 (the default
here) no INFO, 2 no WARNING either, 3 no ERROR either. FATAL lines and anything that
is not a TensorFlow log line always come back.

The package's command-line tools run at level 3 unless the user set one
(:func:`configure_command_line`): TensorFlow's C++ lines during a run (e.g. "failed
call to cuInit" on every run of a machine without a GPU) say nothing to a user of the
tools. That only reaches TensorFlow if set before it is imported, and ``import
nasseg_tf`` imports it, so it happens here, first. Python warnings and the tools' own
messages are not affected.
"""

import contextlib
import os
import re
import sys
import tempfile

#: An absl/TensorFlow C++ log line: severity letter, date, time, thread, file:line].
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] ")
#: absl's notice that logging is not initialised yet (says nothing to a user).
_NOT_INITIALISED = "WARNING: All log messages before absl::InitializeLog() is called"
_RANK = {"I": 0, "W": 1, "E": 2, "F": 3}


#: ``TF_CPP_MIN_LOG_LEVEL`` of the command-line tools when the user set none.
COMMAND_LINE_LOG_LEVEL = "3"


def started_as_command_line(argv=None, orig_argv=None):
    """Whether this process runs one of the package's tools: a console script
    (``nasseg-train``, ...) or ``python -m nasseg_tf.cli.<tool>``."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]).startswith("nasseg-"):
        return True
    if "-m" in orig_argv[:-1]:
        return orig_argv[orig_argv.index("-m") + 1].startswith("nasseg_tf.cli")
    return False


def configure_command_line():
    """In a command-line tool, TensorFlow's C++ logs default to
    :data:`COMMAND_LINE_LOG_LEVEL` (before TensorFlow is imported)."""
    if started_as_command_line():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", COMMAND_LINE_LOG_LEVEL)


def min_log_level(default=1):
    """``TF_CPP_MIN_LOG_LEVEL`` as an int (``default`` when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", default))
    except ValueError:
        return default


def filter_lines(text, level):
    """The lines of ``text`` that log ``level`` keeps (see the module docstring). A
    line that continues a log message (no header of its own) goes with its message."""
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match:
            keep = _RANK[match.group(1)] >= min(level, 3)
        elif line.startswith(_NOT_INITIALISED):
            keep = level <= 0
        elif not line.strip():
            pass  # a blank line keeps the previous decision
        elif not line.startswith((" ", "\t", "To enable the following instructions")):
            keep = True  # not part of a log message: a Python warning, a print
        if keep:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_native_stderr(level=None):
    """Within the block, stderr lines below ``level`` (default: :func:`min_log_level`)
    are dropped (see the module docstring). A no-op at level 0 or where file
    descriptor 2 cannot be redirected."""
    level = min_log_level() if level is None else level
    try:
        saved = os.dup(2) if level > 0 else None
    except OSError:
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        _flush(sys.stderr)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush(sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_lines(capture.read().decode("utf-8", "replace"), level)
            if text:
                sys.stderr.write(text)
                _flush(sys.stderr)


def _flush(stream):
    try:
        stream.flush()
    except (AttributeError, ValueError, OSError):
        pass


@contextlib.contextmanager
def quiet_tensorflow_import():
    """:func:`filtered_native_stderr` around the block if TensorFlow is not imported
    yet (the block is what imports it); otherwise nothing."""
    if "tensorflow" in sys.modules:
        yield
    else:
        with filtered_native_stderr():
            yield
