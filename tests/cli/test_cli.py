"""Command-line tools as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf import zoo

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


def _run(module, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_zoo_describe_json_reports_params_madds_and_context():
    result = _run("nasseg_tf.cli.zoo_tool", "describe", "autodeeplab_s", "--num_classes=19",
                  "--input_size=65x129", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["params"] == 10147427
    assert summary["madds"] > 0 and summary["context_madds"] > 0
    assert 0 < summary["context_params"] < summary["params"]


def test_zoo_list_and_unknown_name():
    listed = _run("nasseg_tf.cli.zoo_tool", "list")
    assert "autodeeplab_m" in listed.stdout
    bad = _run("nasseg_tf.cli.zoo_tool", "describe", "resnet50")
    assert bad.returncode == 2 and "known models: autodeeplab_l" in bad.stderr


@pytest.mark.slow  # a full autodeeplab_s SavedModel; test_import_checkpoint exports one too
def test_export_cli_writes_a_servable_model(tmp_path):
    model = zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4,
                      aspp_filters=8, decoder_filters=8)
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    out = str(tmp_path / "export")
    result = _run("nasseg_tf.cli.export", f"--keras_model={path}", f"--export_dir={out}")
    assert result.returncode == 0, result.stderr
    loaded = tf.saved_model.load(str(tmp_path / "export" / "1"))  # TF Serving version 1
    image = np.random.default_rng(0).integers(0, 256, (1, 29, 35, 3)).astype("uint8")
    semantic = loaded.signatures["serving_default"](images=tf.constant(image))["semantic"]
    expected = np.argmax(np.asarray(model(image.astype("float32"))), -1)
    np.testing.assert_array_equal(semantic.numpy(), expected)


# Every console script of the installed distribution, run in one fresh process (one
# TensorFlow start instead of one per tool): --help, an unknown flag, a bad value of a
# typed flag. Between tools the flags a tool defined are deleted again.
_HARNESS = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
from absl import flags
from nasseg_tf.cli import common

def call(tool, run, args):
    sys.argv = [tool, *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run()
            code = 0
        except SystemExit as e:
            code = e.code
    defined = {name: type(flags.FLAGS[name].parser).__name__ for name in common._TOOL_FLAGS}
    for name in list(common._TOOL_FLAGS):
        delattr(flags.FLAGS, name)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "flags": defined}

report = {}
for ep in entry_points(group="console_scripts"):
    if ep.value.startswith("nasseg_tf."):
        run = ep.load()
        helped = call(ep.name, run, ["--help"])
        typed = sorted(n for n, p in helped["flags"].items()
                       if p in ("IntegerParser", "FloatParser", "EnumParser",
                                "BooleanParser"))
        report[ep.name] = {
            "help": helped,
            "unknown": call(ep.name, run, ["--no_such_flag=1"]),
            "bad_value": call(ep.name, run, [f"--{typed[0]}=abc"]) if typed else None,
        }
# nasseg-train without a recipe: the configuration is incomplete (no Model.name).
train = [ep for ep in entry_points(group="console_scripts") if ep.name == "nasseg-train"]
report["nasseg-train"]["no_recipe"] = call("nasseg-train", train[0].load(),
                                           ["--model_dir=" + sys.argv[1]])
print(json.dumps(report))
"""

TOOLS = ("nasseg-zoo", "nasseg-import-checkpoint", "nasseg-export", "nasseg-demo",
         "nasseg-build-data", "nasseg-train", "nasseg-eval", "nasseg-predict",
         "nasseg-search-autodeeplab", "nasseg-search-dpc")


def _one_error_line(result, tool):
    lines = result["err"].strip().splitlines()
    return (result["code"] == 2 and len(lines) == 1 and lines[0].startswith(f"{tool}: error: ")
            and not result["out"])


def test_every_console_script_helps_and_rejects_bad_flags_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, "-c", _HARNESS, str(work / "run")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert sorted(report) == sorted(TOOLS)
    typed = 0
    for tool, cases in report.items():
        helped = cases["help"]
        assert helped["code"] == 0 and "Usage" in helped["out"], (tool, helped)
        assert helped["flags"], tool
        for name in helped["flags"]:  # the tool's own flags, not only --helpfull
            assert f"--{name}" in helped["out"] or f"--[no]{name}" in helped["out"], (
                tool, name)
        assert _one_error_line(cases["unknown"], tool), (tool, cases["unknown"])
        assert "no_such_flag" in cases["unknown"]["err"]
        if cases["bad_value"] is not None:
            typed += 1
            assert _one_error_line(cases["bad_value"], tool), (tool, cases["bad_value"])
            assert "abc" in cases["bad_value"]["err"]
    assert typed >= 5  # half the tools have an integer, enum or boolean flag
    # nasseg-train without a recipe fails before writing anything: no run folder, no
    # generated demo data (it wrote 8 MB of it first).
    no_recipe = report["nasseg-train"]["no_recipe"]
    assert _one_error_line(no_recipe, "nasseg-train"), no_recipe
    assert "Model.name is not set" in no_recipe["err"]
    assert os.listdir(work) == []


@pytest.mark.slow  # one TensorFlow start per tool (~5 s each)
@pytest.mark.parametrize("tool", TOOLS)
def test_installed_console_script_help_exits_0_with_its_flags(tool, tmp_path):
    script = os.path.join(sysconfig.get_path("scripts"), tool)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",
                                                             "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run([script, "--help"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage" in result.stdout and f"{tool}:" in result.stdout  # its flags' section
    assert result.stdout.count("\n  --") >= 2
    assert result.stderr == ""  # TensorFlow's start-up lines are filtered
