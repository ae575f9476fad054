"""Official TF1 DeepLab checkpoints into the zoo: every weight by its official name.

The checkpoints are written by the test from the variable tables of
``tests/official_graph.py``, which are built from SPEC §7 alone (not from our models),
so a wrong name or shape on either side fails here.
"""

import os

import numpy as np
import pytest

import official_graph as og
from nasseg_tf.models import weights, zoo
from nasseg_tf.train.checkpointing import variables_by_path

pytestmark = pytest.mark.e2e  # full-size models: seconds each

# zoo entry -> (official table, overrides of the zoo entry that match it)
WHOLE_MODELS = {
    "mobilenetv2_aspp": "mobilenetv2_aspp",
    "mobilenetv2_dpc": "mobilenetv2_dpc",
    "mobilenetv2_deeplabv3": "mobilenetv2_deeplabv3",
    "xception65_aspp": "xception65",
    "xception71_aspp": "xception71_aspp",
    "xception71_dpc": "xception71_dpc",
}
SLOW = {"xception65_aspp", "xception71_aspp"}  # same code paths as xception71_dpc
NUM_CLASSES = 19


def _write(tmp_path, table, seed=0):
    tensors = og.random_weights(table, seed=seed)
    prefix = og.write_checkpoint(str(tmp_path / "ckpt" / "model.ckpt-30000"), tensors)
    return prefix, tensors


def _check_values(model, tensors, pairs):
    mine = variables_by_path(model.variables)
    for ours, theirs in pairs:
        np.testing.assert_array_equal(mine[ours].numpy(), tensors[theirs], err_msg=ours)


@pytest.mark.parametrize("entry", [pytest.param(e, marks=pytest.mark.slow) if e in SLOW
                                   else e for e in WHOLE_MODELS])
def test_whole_model_checkpoint_imports_with_nothing_missing_or_unused(entry, tmp_path):
    table = og.with_training_extras(og.deeplab_table(WHOLE_MODELS[entry], NUM_CLASSES),
                                    momentum=True, global_step=True)
    prefix, tensors = _write(tmp_path, table)
    model = zoo.build(entry, num_classes=NUM_CLASSES)
    report = weights.load_official_checkpoint(model, os.path.dirname(prefix))
    assert report["checkpoint"] == prefix and report["scope"] == "model"
    assert report["unused"] == [] and report["skipped"] == []
    weighted = [v for v in model.variables if not v.path.endswith("seed_generator_state")]
    assert report["loaded"] == len(weighted)
    _check_values(model, tensors, [("logits/kernel", "logits/semantic/weights"),
                                   ("logits/bias", "logits/semantic/biases")])
    if entry.startswith("xception71"):
        _check_values(model, tensors, [
            ("entry_block4_sep2/depthwise/kernel", "xception_71/entry_flow/block4/unit_1/"
             "xception_module/separable_conv2_depthwise/depthwise_weights"),
            ("middle_block16_sep3/bn/moving_variance", "xception_71/middle_flow/block1/"
             "unit_16/xception_module/separable_conv3_pointwise/BatchNorm/moving_variance"),
            ("decoder/conv1/depthwise_bn/gamma",
             "decoder/decoder_conv1_depthwise/BatchNorm/gamma")])
    if entry.endswith("_dpc"):
        _check_values(model, tensors, [
            ("context/branch_4/pointwise/kernel", "meta_architecture/branch4_pointwise/weights"),
            ("context/projection/bn/beta",
             "meta_architecture/concat_projection/BatchNorm/beta")])
    if entry == "mobilenetv2_aspp":
        _check_values(model, tensors, [
            ("block16_project/kernel", "MobilenetV2/expanded_conv_16/project/weights"),
            ("context/atrous_12/depthwise/kernel", "aspp2_depthwise/depthwise_weights"),
            ("context/image_pooling/conv/bn/gamma", "image_pooling/BatchNorm/gamma")])
        # The official ASPP concatenates image pooling first, ours last: rows rotated.
        projection = tensors["concat_projection/weights"]
        np.testing.assert_array_equal(
            variables_by_path(model.variables)["context/projection/conv/kernel"].numpy(),
            np.concatenate([projection[:, :, 256:], projection[:, :, :256]], axis=2))


@pytest.mark.parametrize("name,entry", [
    ("mobilenet_v2_1.0_224", "mobilenetv2_dpc"),
    pytest.param("xception_65", "xception65_aspp", marks=pytest.mark.slow),
    ("xception_71", "xception71_dpc")])
def test_imagenet_backbone_imports_into_the_zoo_backbone(name, entry, tmp_path):
    table = og.imagenet_table(name, ema=name.startswith("mobilenet"),
                              momentum=True, global_step=True)
    prefix, tensors = _write(tmp_path, table)
    model = zoo.build(entry, num_classes=NUM_CLASSES)
    heads_before = variables_by_path(model.variables)["logits/kernel"].numpy()
    report = weights.load_official_checkpoint(model, prefix)
    assert report["scope"] == "backbone"
    mine = variables_by_path(model.variables)
    assert all(p.startswith(("context/", "decoder/", "logits/")) for p in report["skipped"])
    np.testing.assert_array_equal(mine["logits/kernel"].numpy(), heads_before)
    if name.startswith("mobilenet"):
        # Exactly the ImageNet head is left over; the moving averages were loaded.
        assert sorted(report["unused"]) == sorted(
            n for n in table if n.startswith(("MobilenetV2/Conv_1/", "MobilenetV2/Logits/"))
            and not n.endswith(("/ExponentialMovingAverage", "/Momentum")))
        shadow = "MobilenetV2/expanded_conv_3/expand/weights/ExponentialMovingAverage"
        np.testing.assert_array_equal(mine["block3_expand/kernel"].numpy(), tensors[shadow])
        assert not np.array_equal(tensors[shadow],
                                  tensors["MobilenetV2/expanded_conv_3/expand/weights"])
    else:
        assert report["unused"] == [f"{name}/logits/biases", f"{name}/logits/weights"]
        _check_values(model, tensors, [("entry_conv1_1/conv/kernel",
                                        f"{name}/entry_flow/conv1_1/weights")])


@pytest.mark.parametrize("size,multiplier", [
    ("s", 20), pytest.param("m", 32, marks=pytest.mark.slow),
    pytest.param("l", 48, marks=pytest.mark.slow)])
def test_auto_deeplab_checkpoint_of_the_official_code_imports(size, multiplier, tmp_path):
    table = og.hnasnet_table(filter_multiplier=multiplier, num_classes=NUM_CLASSES)
    prefix, tensors = _write(tmp_path, table)
    model = zoo.build(f"autodeeplab_{size}", num_classes=NUM_CLASSES)
    report = weights.load_official_checkpoint(model, prefix)
    assert report["unused"] == [] and report["scope"] == "model"
    _check_values(model, tensors, [
        ("stem_conv0/bn/moving_mean", "hnasnet/conv0_bn/moving_mean"),
        ("cell_11/block0_left/conv/conv/kernel",
         "hnasnet/cell_11/comb_iter_0/left/atrous_5x5/weights"),
        ("cell_11/block0_right/sep1/pointwise/kernel",
         "hnasnet/cell_11/comb_iter_0/right/separable_3x3_2/pointwise_weights"),
        ("cell_3/prev_1x1/bn/gamma", "hnasnet/cell_3/beginning_bn/gamma"),
        ("decoder/conv1/conv/kernel", "decoder/decoder_conv0/decoder_conv0_2/weights")])


# --------------------------------------------------------------------------------------
# Bad input: one clear error, nothing written.


def test_an_xception65_checkpoint_into_xception71_names_the_missing_scopes(tmp_path):
    prefix, _ = _write(tmp_path, og.deeplab_table("xception65", NUM_CLASSES))
    model = zoo.build("xception71_dpc", num_classes=NUM_CLASSES)
    before = variables_by_path(model.variables)["entry_conv1_1/conv/kernel"].numpy()
    with pytest.raises(weights.CheckpointImportError,
                       match=r"missing: xception_71/entry_flow/conv1_1/weights, .*"
                             r"first missing scopes: xception_71/entry_flow, "
                             r"xception_71/middle_flow, xception_71/exit_flow"):
        weights.load_official_checkpoint(model, prefix)
    np.testing.assert_array_equal(  # all or nothing: no weight was assigned
        variables_by_path(model.variables)["entry_conv1_1/conv/kernel"].numpy(), before)


def test_a_class_mismatch_names_the_fix_and_skip_logits_imports_the_rest(tmp_path):
    prefix, tensors = _write(tmp_path, og.deeplab_table("mobilenetv2_dpc", 21))
    model = zoo.build("mobilenetv2_dpc", num_classes=NUM_CLASSES)
    with pytest.raises(weights.CheckpointImportError,
                       match=r"logits.*\[1, 1, 256, 21\] \(model \[1, 1, 256, 19\]\).*skip"):
        weights.load_official_checkpoint(model, prefix)
    report = weights.load_official_checkpoint(model, prefix, skip_logits=True)
    assert report["skipped"] == ["logits/kernel", "logits/bias"]
    assert report["unused"] == ["logits/semantic/biases", "logits/semantic/weights"]
    _check_values(model, tensors, [("stem_conv/kernel", "MobilenetV2/Conv/weights")])


def test_a_missing_path_and_a_truncated_data_file_are_clear_errors(tmp_path):
    model = zoo.build("mobilenetv2_dpc", num_classes=NUM_CLASSES)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        weights.load_official_checkpoint(model, str(tmp_path / "nope" / "model.ckpt"))
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        weights.load_official_checkpoint(model, str(tmp_path))
    prefix, _ = _write(tmp_path, og.deeplab_table("mobilenetv2_dpc", NUM_CLASSES))
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    before = variables_by_path(model.variables)["stem_conv/kernel"].numpy()
    with pytest.raises(weights.CheckpointImportError, match="cannot read"):
        weights.load_official_checkpoint(model, prefix)
    np.testing.assert_array_equal(
        variables_by_path(model.variables)["stem_conv/kernel"].numpy(), before)


# --------------------------------------------------------------------------------------
# End to end: the imported model computes the official graph's function.


@pytest.mark.parametrize("entry,table", [("xception71_dpc", "xception71_dpc"),
                                         ("mobilenetv2_deeplabv3", "mobilenetv2_deeplabv3")])
def test_imported_model_gives_the_official_graphs_logits(entry, table, tmp_path):
    """Our Keras model (official numerics, imported weights) against an independent
    forward pass written in raw tf.nn from SPEC §7 that reads the checkpoint by its
    official names: a k·OS+1 crop and another size, to 1e-4."""
    prefix, tensors = _write(tmp_path, og.deeplab_table(table, 3), seed=3)
    model = zoo.build(entry, num_classes=3, weights=prefix)
    rng = np.random.default_rng(0)
    for size in ((65, 65), (49, 81)):
        images = rng.integers(0, 256, (2,) + size + (3,)).astype("float32")
        official = og.official_logits(tensors, images, table, output_stride=16,
                                      num_classes=3).numpy()
        ours = np.asarray(model(images, training=False))
        assert np.abs(official).max() > 0.1  # a real signal, not a vanishing one
        np.testing.assert_allclose(ours, official, atol=1e-4, rtol=1e-4,
                                   err_msg=f"{entry} at {size}")
