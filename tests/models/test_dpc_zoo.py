"""DPC / ASPP zoo models on MobileNet-v2 and Xception: counts vs DPC Table 1, builds,
retraining a searched cell with nasseg-train, JAX parity."""

import json
import os
import textwrap

import numpy as np
import pytest

from layer_checks import run_on_jax
import gin_runs
from nasseg_tf.cli import configs
from nasseg_tf import zoo
from nasseg_tf.counting import count, describe
from nasseg_tf.data import ensure_demo_dataset

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "gin", "test", "tiny.gin")
FRAME = (1025, 2049)  # SPEC §3.4: the basis of Table 1 (65x129 positions at OS 16)
POOL_CELL = [{"op": "pyramid_pooling", "grid_size": [2, 2], "input": -1},
             {"kernel": 3, "rate": [3, 1], "op": "conv", "input": 0},
             {"kernel": 1, "rate": [1, 1], "op": "conv", "input": -1}]


@pytest.mark.parametrize("name", ["mobilenetv2_dpc", "mobilenetv2_aspp",
                                  "xception71_dpc", "xception71_aspp"])
def test_context_counts_match_dpc_table_1(name):
    summary = describe(zoo.build(name, num_classes=19), FRAME)
    paper = zoo.get_spec(name).paper
    assert abs(summary["context_madds"] / paper["context_madds"] - 1) < 0.01
    if name.endswith("dpc"):
        assert round(summary["context_params"] / 1e6, 2) == paper["context_params"] / 1e6
    else:
        # Table 1's ASPP params are the three atrous branches alone (README): ours add
        # the 1x1 branch and image pooling, C*256 each.
        channels = 320 if name.startswith("mobilenet") else 2048
        atrous = summary["context_params"] - 2 * channels * 256
        assert abs(atrous / paper["context_params"] - 1) < 0.03


def test_xception71_dpc_whole_network_matches_the_official_count():
    spec = zoo.get_spec("xception71_dpc")
    report = count(zoo.build("xception71_dpc", num_classes=19), FRAME)
    assert abs(report.madds / spec.paper["madds"] - 1) < 0.01


def test_entries_have_the_official_structure():
    names = {"mobilenetv2_dpc", "mobilenetv2_aspp", "xception71_dpc", "xception71_aspp",
             "xception65_aspp"}
    assert names <= set(zoo.list_models())
    for name in names:
        assert zoo.get_spec(name).defaults["decoder"] == name.startswith("xception")


@pytest.mark.parametrize("output_stride", [8, 16])
def test_small_mobilenet_dpc_forward_at_any_size(output_stride):
    model = zoo.build("mobilenetv2_dpc", num_classes=4, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=POOL_CELL, output_stride=output_stride)
    x = np.random.default_rng(0).uniform(0, 255, (2, 49, 37, 3)).astype("float32")
    assert tuple(model(x, training=False).shape) == (2, 49, 37, 4)
    rate = model.get_layer("context").branches[1].depthwise.dilation_rate
    assert rate == (3 * 16 // output_stride, 16 // output_stride)


def test_xception65_aspp_with_decoder_forward():
    model = zoo.build("xception65_aspp", num_classes=3, context_filters=8,
                      decoder_filters=8)
    x = np.random.default_rng(1).uniform(0, 255, (1, 33, 41, 3)).astype("float32")
    assert tuple(model(x, training=False).shape) == (1, 33, 41, 3)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown backbone 'resnet'.*mobilenet_v2"):
        zoo.build("mobilenetv2_dpc", backbone="resnet")
    with pytest.raises(ValueError, match="unknown context module"):
        zoo.build("mobilenetv2_dpc", context="psp")
    with pytest.raises(ValueError, match="output_stride"):
        zoo.build("mobilenetv2_dpc", output_stride=32)
    with pytest.raises(ValueError, match="unknown op"):
        zoo.build("mobilenetv2_dpc", dpc_cell=[{"op": "nope", "input": -1}])


def test_searched_cell_retrains_with_nasseg_train(tmp_path):
    cell = tmp_path / "best_cell.json"
    cell.write_text(json.dumps(POOL_CELL))
    data_dir = str(tmp_path / "data")
    ensure_demo_dataset(data_dir, num_train=8, num_val=2, height=40, width=40, seed=0)
    model_dir = str(tmp_path / "run")
    configs.parse([TINY], [
        f"Data.data_dir = '{data_dir}'", "Model.name = 'mobilenetv2_dpc'",
        "Model.overrides = {'depth_multiplier': 0.25, 'context_filters': 8, "
        "'bn_momentum': 0.9}",
        f"Model.dpc_cell = '{cell}'", "Training.steps = 3"])
    out = gin_runs.train(model_dir, progress=False, argv=["nasseg-train"])
    assert np.isfinite(out["metrics"]["loss"])
    context = out["model"].get_layer("context")
    assert context.cell.to_config() == POOL_CELL
    restored, _, step = gin_runs.restore(model_dir)
    assert step == 3
    assert restored.get_layer("context").cell.to_config() == POOL_CELL


_JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from nasseg_tf import zoo
    weights, inputs, out, cell = sys.argv[1:5]
    model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=cell)
    model.load_weights(weights)
    np.save(out, np.asarray(model(np.load(inputs), training=False)))
""")


def test_dpc_model_on_jax_backend_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    cell = tmp_path / "cell.json"
    cell.write_text(json.dumps(POOL_CELL))
    model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=str(cell))
    x = np.random.default_rng(2).uniform(0, 255, (1, 47, 35, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    weights = str(tmp_path / "m.weights.h5")
    model.save_weights(weights)
    np.save(tmp_path / "x.npy", x)
    run_on_jax(_JAX_SCRIPT, weights, tmp_path / "x.npy", tmp_path / "y.npy", cell)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4)
