"""DPC / ASPP zoo models on MobileNet-v2 and Xception: counts vs DPC Table 1, builds,
retraining a searched cell with nasseg-train, JAX parity."""

import json
import os
import textwrap

import keras
import numpy as np
import pytest

from layer_checks import run_on_jax
import gin_runs
from nasseg_tf.cli import configs
from nasseg_tf import zoo
from nasseg_tf.counting import count, describe
from nasseg_tf.data import ensure_demo_dataset
from nasseg_tf.internals import flatten_layers

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


# ------------------------------------------------------------------------------------
# Numerics (SPEC §7, "Numerics of the official graph").

DEEPLAB_ENTRIES = ["mobilenetv2_dpc", "mobilenetv2_aspp", "mobilenetv2_deeplabv3",
                   "xception71_dpc", "xception71_aspp", "xception65_aspp"]


def _tiny_deeplab(name, **overrides):
    size = ({"depth_multiplier": 0.25} if name.startswith("mobilenet")
            else {"decoder_filters": 8})
    return zoo.build(name, num_classes=3, context_filters=8, **size, **overrides)


def _randomize_batch_norms(model, seed=7):
    """Non-trivial moving statistics, so inference-mode batch norm is compared too (and
    the outputs are not vanishingly small)."""
    rng = np.random.default_rng(seed)
    for var in model.non_trainable_variables:
        value = (rng.uniform(0.5, 1.5, var.shape) if "variance" in var.path
                 else rng.normal(0, 0.1, var.shape))
        var.assign(value.astype("float32"))


def _batch_norms(layer):
    return [l for l in flatten_layers(layer, include_self=True)
            if isinstance(l, keras.layers.BatchNormalization)]


def _numerics_of(model):
    """What the model's layers say about its numerics."""
    heads = [model.get_layer("context")]
    if any(l.name == "decoder" for l in model.layers):
        heads.append(model.get_layer("decoder"))
    head_bns = {id(bn) for head in heads for bn in _batch_norms(head)}
    backbone_bns = [bn for bn in _batch_norms(model) if id(bn) not in head_bns]
    resizers = [model.get_layer("upsample_logits")] + [
        l for head in heads for l in flatten_layers(head, include_self=True)
        if hasattr(l, "align_corners")]
    return {
        "align_corners": {l.align_corners for l in resizers},
        "head_bn": {(bn.momentum, bn.epsilon) for head in heads
                    for bn in _batch_norms(head)},
        "backbone_bn": {(bn.momentum, bn.epsilon) for bn in backbone_bns},
        "zero_padding": any(isinstance(l, keras.layers.ZeroPadding2D)
                            for l in model.layers)}


@pytest.mark.parametrize("name", DEEPLAB_ENTRIES)
def test_deeplab_entries_use_the_official_numerics_by_default(name):
    model = _tiny_deeplab(name)
    mobilenet = name.startswith("mobilenet")
    assert _numerics_of(model) == {
        "align_corners": {True},
        "head_bn": {(0.9997, 1e-5)},
        "backbone_bn": {(0.997 if mobilenet else 0.9997, 1e-3)},
        "zero_padding": False}  # MobileNet-v2: TF 'SAME'; Xception pads inside ConvBN
    legacy = _tiny_deeplab(name, numerics="legacy")
    assert _numerics_of(legacy) == {
        "align_corners": {False}, "head_bn": {(0.9997, 1e-3)},
        "backbone_bn": {(0.9997, 1e-3)}, "zero_padding": mobilenet}
    # Checkpoints (and the official importer) key weights by path: both the same.
    assert [v.path for v in legacy.weights] == [v.path for v in model.weights]


def test_bn_overrides_set_every_part_and_unknown_numerics_are_named():
    model = _tiny_deeplab("mobilenetv2_dpc", bn_momentum=0.9)
    assert _numerics_of(model)["head_bn"] == {(0.9, 1e-5)}
    assert _numerics_of(model)["backbone_bn"] == {(0.9, 1e-3)}
    model = _tiny_deeplab("mobilenetv2_dpc", bn_epsilon=1e-4)
    assert {e for _, e in _numerics_of(model)["head_bn"] | _numerics_of(model)[
        "backbone_bn"]} == {1e-4}
    with pytest.raises(ValueError, match="numerics 'tf1'; known: official, legacy"):
        _tiny_deeplab("mobilenetv2_dpc", numerics="tf1")


@pytest.mark.parametrize("output_stride", [16, 8])
def test_mobilenetv2_deeplabv3_is_the_official_mobilenet_v2_model(output_stride):
    model = zoo.build("mobilenetv2_deeplabv3", num_classes=19,
                      output_stride=output_stride)
    context = model.get_layer("context")
    assert [b.name for b in context.branches] == ["conv_1x1", "image_pooling"]
    assert tuple(context.projection.conv.kernel.shape) == (1, 1, 512, 256)
    assert not any(l.name == "decoder" for l in model.layers)
    assert _numerics_of(model)["align_corners"] == {True}
    spec = zoo.get_spec("mobilenetv2_deeplabv3")
    assert spec.paper["miou"] == 70.71 and "trainfine" in spec.paper["source"]
    x = np.zeros((1, 33, 33, 3), "float32")
    assert tuple(model(x, training=False).shape) == (1, 33, 33, 19)


def test_pool_crop_size_fixes_the_window_of_aspp_image_pooling():
    model = _tiny_deeplab("mobilenetv2_deeplabv3", pool_crop_size=(65, 65))
    pooling = model.get_layer("context").branches[-1]
    assert (pooling.pool_crop_size, pooling.output_stride) == ((65, 65), 16)
    assert pooling.kernel_size((9, 9)) == (5, 5)
    _randomize_batch_norms(model)
    glob = _tiny_deeplab("mobilenetv2_deeplabv3")
    glob.set_weights(model.get_weights())
    rng = np.random.default_rng(3)
    crop = rng.uniform(0, 255, (1, 65, 65, 3)).astype("float32")  # features 5x5
    fixed, mean = (np.asarray(m(crop, training=False)) for m in (model, glob))
    np.testing.assert_allclose(fixed, mean, rtol=0, atol=1e-5 * np.abs(mean).max())
    bigger = rng.uniform(0, 255, (1, 129, 97, 3)).astype("float32")  # 9x7: windows 5x5
    features = keras.Model(model.input, model.get_layer("context").input)(bigger)
    fixed, mean = (np.asarray(m.get_layer("context").branches[-1](features,
                                                                  training=False))
                   for m in (model, glob))
    assert np.abs(fixed - mean).max() > 1e-2 * np.abs(mean).max()  # another function


_JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from nasseg_tf import zoo
    weights, inputs, out, cell, overrides = sys.argv[1:6]
    model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=cell, **json.loads(overrides))
    model.load_weights(weights)
    np.save(out, np.asarray(model(np.load(inputs), training=False)))
""")


@pytest.mark.parametrize("numerics,size,crop", [
    ("legacy", (47, 35), None),
    # even width: MobileNet-v2's 'SAME' padding; 65 = 4·16 + 1: the gather-free resize;
    # a fixed pyramid-pooling window from a smaller crop: a real resize back.
    ("official", (65, 50), (33, 33)),
])
def test_dpc_model_on_jax_backend_matches_tensorflow(tmp_path, numerics, size, crop):
    pytest.importorskip("jax")
    cell = tmp_path / "cell.json"
    cell.write_text(json.dumps(POOL_CELL))
    overrides = {"numerics": numerics, "pool_crop_size": crop}
    keras.utils.set_random_seed(0)
    model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=str(cell), **overrides)
    _randomize_batch_norms(model)
    x = np.random.default_rng(2).uniform(0, 255, (1, *size, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    weights = str(tmp_path / "m.weights.h5")
    model.save_weights(weights)
    np.save(tmp_path / "x.npy", x)
    run_on_jax(_JAX_SCRIPT, weights, tmp_path / "x.npy", tmp_path / "y.npy", cell,
               json.dumps(overrides))
    assert np.abs(expected).max() > 1e-3  # a signal, not a vanishing one
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0,
                               atol=1e-4 * np.abs(expected).max())
