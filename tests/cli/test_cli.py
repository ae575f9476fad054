"""Command-line tools as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys

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


@pytest.mark.parametrize("module", ["nasseg_tf.cli.zoo_tool", "nasseg_tf.cli.export",
                                    "nasseg_tf.cli.demo",
                                    "nasseg_tf.cli.search_autodeeplab"])
def test_help_describes_the_tool(module):
    result = _run(module, "--help")
    # absl exits with status 1 after printing --help.
    assert result.returncode in (0, 1)
    name = module.split(".")[-1]
    assert "Usage" in result.stdout
    assert name in result.stdout or name.replace("_", "-") in result.stdout
