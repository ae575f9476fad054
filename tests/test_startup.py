"""TensorFlow's start-up lines are filtered by level; everything else comes back."""

import os
import sys

from nasseg_tf import startup

INFO = ("I0000 00:00:1796020589.052208   12749 port.cc:153] oneDNN custom operations are "
        "on.\n")
CPU = ("I0000 00:00:1796020589.140466   12749 cpu_feature_guard.cc:227] This TensorFlow "
       "binary is optimized.\nTo enable the following instructions: AVX2 FMA, in other "
       "operations, rebuild TensorFlow.\n")
NOTICE = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
          "STDERR\n")
WARN = "W0000 00:00:1796020589.1   12749 computation_placer.cc:177] already registered\n"
ERROR = ("E0000 00:00:1796021283.052391   21728 cuda_platform.cc:52] failed call to "
         "cuInit\n")
PYTHON = "/x/y.py:3: UserWarning: a real warning\n  warnings.warn('a real warning')\n"


def test_levels_drop_what_tensorflow_would():
    text = NOTICE + INFO + CPU + WARN + PYTHON + ERROR
    assert startup.filter_lines(text, 0) == text
    assert startup.filter_lines(text, 1) == WARN + PYTHON + ERROR
    assert startup.filter_lines(text, 2) == PYTHON + ERROR
    assert startup.filter_lines(text, 3) == PYTHON
    fatal = "F0000 00:00:1.5   1 x.cc:1] fatal\n"
    assert startup.filter_lines(fatal, 3) == fatal


def test_the_filter_works_on_the_file_descriptor_and_keeps_python_output(capfd):
    with startup.filtered_native_stderr(level=1):
        os.write(2, (NOTICE + INFO + WARN + PYTHON).encode())  # C++ and Python lines
        print("python stderr", file=sys.stderr)
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "InitializeLog" not in err
    assert WARN + PYTHON in err and "python stderr" in err
    os.write(2, INFO.encode())  # stderr is restored after the block
    assert capfd.readouterr().err == INFO


def test_output_comes_back_when_the_block_raises(capfd):
    try:
        with startup.filtered_native_stderr(level=1):
            os.write(2, (INFO + WARN).encode())
            raise ImportError("broken")
    except ImportError:
        pass
    assert capfd.readouterr().err == WARN


def test_level_zero_or_unset(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert startup.min_log_level() == 0
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "x")
    assert startup.min_log_level() == 1
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert startup.min_log_level() == 1


def test_command_line_tools_are_recognised():
    assert startup.started_as_command_line(["/venv/bin/nasseg-train", "--help"], [])
    assert startup.started_as_command_line(
        ["-m"], ["python", "-m", "nasseg_tf.cli.train", "--model_dir=x"])
    assert not startup.started_as_command_line(["-m"], ["python", "-m", "pytest"])
    assert not startup.started_as_command_line(["script.py"], ["python", "script.py"])
    assert not startup.started_as_command_line([""], ["python", "-c", "import nasseg_tf"])
