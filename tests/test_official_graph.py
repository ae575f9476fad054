"""Tests of the official-graph reference (tests/official_graph.py): tables, writer, forward pass.

Self-contained: nothing here uses nasseg_tf's models (the importer's end-to-end test does).
"""

import numpy as np
import pytest
import tensorflow as tf

import official_graph as og

NUM_CLASSES = 3


def _count_prefix(table, prefix):
    return sum(1 for name in table if name.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def test_mobilenet_v2_table_counts_and_names():
    deeplab = og.deeplab_table("mobilenetv2_deeplabv3", NUM_CLASSES)
    # Conv (weights + BN = 5), expanded_conv (depthwise + project = 10), 16 units × 15.
    assert _count_prefix(deeplab, "MobilenetV2/") == 5 + 10 + 16 * 15 == 255
    assert "MobilenetV2/expanded_conv/expand/weights" not in deeplab
    assert deeplab["MobilenetV2/expanded_conv/depthwise/depthwise_weights"] == (3, 3, 32, 1)
    assert deeplab["MobilenetV2/expanded_conv_1/expand/weights"] == (1, 1, 16, 96)
    assert deeplab["MobilenetV2/expanded_conv_16/project/weights"] == (1, 1, 960, 320)
    assert deeplab["MobilenetV2/expanded_conv_16/project/weights"].kind == og.KERNEL
    assert deeplab["MobilenetV2/expanded_conv_3/depthwise/depthwise_weights"].kind == og.DEPTHWISE
    assert not any("Conv_1" in n or "Logits" in n for n in deeplab)

    imagenet = og.imagenet_table("mobilenet_v2_1.0_224")
    assert len(imagenet) == 255 + 5 + 2 == 262
    assert imagenet["MobilenetV2/Conv_1/weights"] == (1, 1, 320, 1280)
    assert imagenet["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] == (1, 1, 1280, 1001)
    assert imagenet["MobilenetV2/Logits/Conv2d_1c_1x1/biases"] == (1001,)
    assert imagenet["MobilenetV2/Logits/Conv2d_1c_1x1/biases"].kind == og.BIAS
    # slim's MobileNet-v2 1.0 at 1001 classes: 3,504,872 trainable at 1000 classes + 1,281.
    assert og.trainable_parameter_count(imagenet) == 3_506_153


def test_training_extras():
    base = og.mobilenet_v2_imagenet_table()
    full = og.mobilenet_v2_imagenet_table(ema=True, momentum=True, global_step=True)
    trainable = [n for n, s in base.items() if s.kind in og.TRAINABLE_KINDS]
    assert len(trainable) == 52 * 3 + 2  # 52 conv+BN (weights, gamma, beta) + the logits' 2
    assert len(full) == 2 * len(base) + len(trainable) + 1
    for name, shape in base.items():
        ema = full[f"{name}/ExponentialMovingAverage"]
        assert ema == shape and ema.slot == og.EMA_SLOT and ema.kind == shape.kind
    assert "MobilenetV2/Conv/BatchNorm/moving_mean/Momentum" not in full
    assert full["MobilenetV2/Conv/BatchNorm/gamma/Momentum"].slot == og.MOMENTUM_SLOT
    assert full["global_step"] == () and full["global_step"].kind == og.GLOBAL_STEP


def test_xception_tables_blocks_and_counts():
    x65, x71 = og.imagenet_table("xception_65"), og.imagenet_table("xception_71")

    def units(table, flow):
        return {n.split("/xception_module/")[0] for n in table if f"/{flow}/" in n and "xception_module" in n}

    e65 = {u.split("/", 1)[1] for u in units(x65, "entry_flow")}
    e71 = {u.split("/", 1)[1] for u in units(x71, "entry_flow")}
    assert e65 < e71 and sorted(e71 - e65) == ["entry_flow/block4/unit_1", "entry_flow/block5/unit_1"]
    assert len(units(x65, "middle_flow")) == len(units(x71, "middle_flow")) == 16
    # stem 2×5; a unit: 3 separable × (depthwise 5 + pointwise 5) (+ shortcut 5); logits 2.
    assert len(x65) == 10 + 3 * 35 + 16 * 30 + 35 + 30 + 2 == 662
    assert len(x71) == len(x65) + 2 * 35 == 732
    assert x71["xception_71/entry_flow/block2/unit_1/xception_module/shortcut/weights"] == (1, 1, 128, 256)
    assert x71["xception_71/entry_flow/block4/unit_1/xception_module/separable_conv1_pointwise/weights"] == (
        1, 1, 256, 728)
    assert x65["xception_65/exit_flow/block2/unit_1/xception_module/separable_conv3_pointwise/weights"] == (
        1, 1, 1536, 2048)
    assert x65["xception_65/logits/weights"] == (1, 1, 2048, 1001)
    assert not any("exit_flow/block2/unit_1/xception_module/shortcut" in n for n in x65)
    assert not any("middle_flow" in n and "shortcut" in n for n in x65)
    for variant in og.XCEPTION_VARIANTS:
        low = og.xception_low_level_scope(variant)
        assert og.imagenet_table(variant)[og.weights_name(low)][3] == 256
    assert og.xception_low_level_scope("xception_65") == (
        "xception_65/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise")
    assert og.xception_low_level_scope("xception_71") == (
        "xception_71/entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise")


@pytest.mark.parametrize("model, count", [
    ("xception65", 660 + 45 + 25 + 2), ("xception71_dpc", 730 + 55 + 25 + 2),
    ("xception71_aspp", 730 + 45 + 25 + 2), ("mobilenetv2_aspp", 255 + 45 + 2),
    ("mobilenetv2_dpc", 255 + 55 + 2), ("mobilenetv2_deeplabv3", 255 + 15 + 2)])
def test_deeplab_table_counts(model, count):
    table = og.deeplab_table(model, NUM_CLASSES)
    assert len(table) == count
    assert table["logits/semantic/weights"] == (1, 1, 256, NUM_CLASSES)
    assert table["logits/semantic/biases"] == (NUM_CLASSES,)
    assert all(og.bn_scope("logits") not in n for n in table)


def test_deeplab_head_shapes():
    x65 = og.deeplab_table("xception65", 19)
    assert x65["image_pooling/weights"] == (1, 1, 2048, 256)
    assert x65["aspp0/weights"] == (1, 1, 2048, 256)
    for i in (1, 2, 3):
        assert x65[f"aspp{i}_depthwise/depthwise_weights"] == (3, 3, 2048, 1)
        assert x65[f"aspp{i}_pointwise/weights"] == (1, 1, 2048, 256)
        assert x65[f"aspp{i}_depthwise/BatchNorm/moving_variance"] == (2048,)
    assert x65["concat_projection/weights"] == (1, 1, 1280, 256)
    assert x65["decoder/feature_projection0/weights"] == (1, 1, 256, 48)
    assert x65["decoder/decoder_conv0_depthwise/depthwise_weights"] == (3, 3, 304, 1)
    assert x65["decoder/decoder_conv0_pointwise/weights"] == (1, 1, 304, 256)
    assert x65["decoder/decoder_conv1_pointwise/weights"] == (1, 1, 256, 256)

    dpc = og.deeplab_table("xception71_dpc", 19)
    assert dpc["meta_architecture/branch0_depthwise/depthwise_weights"] == (3, 3, 2048, 1)
    assert dpc["meta_architecture/branch1_pointwise/weights"] == (1, 1, 256, 256)
    assert dpc["meta_architecture/concat_projection/weights"] == (1, 1, 1280, 256)
    assert not any(n.startswith(("aspp", "image_pooling", "concat_projection")) for n in dpc)

    v3 = og.deeplab_table("mobilenetv2_deeplabv3", 19)
    assert v3["concat_projection/weights"] == (1, 1, 512, 256)
    assert v3["image_pooling/weights"] == (1, 1, 320, 256)
    assert not any(n.startswith(("aspp1", "decoder")) for n in v3)
    assert og.deeplab_table("mobilenetv2_aspp", 19)["aspp3_depthwise/depthwise_weights"] == (3, 3, 320, 1)


def _module_params(table, prefixes, with_bn=False):
    return sum(int(np.prod(s)) for n, s in table.items() if n.startswith(prefixes)
               and (with_bn or s.kind in (og.KERNEL, og.DEPTHWISE)))


def test_context_module_params_match_spec_3_4():
    # SPEC §3.4: the module's branches without the concat projection and without BN.
    branches = tuple(og.dpc_branch_scope(i) for i in range(5))
    assert _module_params(og.deeplab_table("xception71_dpc"), branches) == 814_080
    assert _module_params(og.deeplab_table("mobilenetv2_dpc"), branches) == 356_160
    aspp = ("aspp",)  # 1×1 + three separable atrous branches (image pooling is negligible)
    assert _module_params(og.deeplab_table("xception71_aspp"), aspp) == 2_152_448
    assert _module_params(og.deeplab_table("mobilenetv2_aspp"), aspp) == 336_320


def test_xception71_aspp_matches_table_2_params():
    # SPEC §2.6: DeepLabv3+ (Xception-71) 43.48M (19 classes, kernels + gamma/beta + logits bias).
    assert round(og.trainable_parameter_count(og.deeplab_table("xception71_aspp", 19)) / 1e6, 2) == 43.48


@pytest.mark.parametrize("size, total, backbone", [("S", 10.15, 7.03), ("M", 21.62, 17.61), ("L", 44.42, 39.22)])
def test_hnasnet_table_matches_table_2_params(size, total, backbone):
    f = og.HNASNET_MULTIPLIERS[size]
    assert round(og.trainable_parameter_count(og.hnasnet_table(f, 19)) / 1e6, 2) == total
    assert round(og.trainable_parameter_count(og.hnasnet_table(f, 19, head=False)) / 1e6, 2) == backbone


def test_hnasnet_table_follows_the_published_cell():
    f = 20
    table = og.hnasnet_table(f, NUM_CLASSES)
    plan = og.hnasnet_cell_plan(og.PUBLISHED_HNASNET, f)
    assert [4 * 2 ** c["level"] for c in plan] == [4, 4, 4, 8, 16, 8, 16, 16, 32, 32, 16, 8]
    assert [c["filters"] for c in plan] == [f * 2 ** c["level"] for c in plan]
    assert [c["upsample"] for c in plan] == [False] * 5 + [True] + [False] * 4 + [True, True]
    assert [c["stride"] for c in plan] == [1, 1, 1, 2, 2, 1, 2, 1, 2, 1, 1, 1]
    assert table["hnasnet/conv0/weights"] == (3, 3, 3, 64)
    assert table["hnasnet/conv2/weights"] == (3, 3, 64, 128)
    assert table["hnasnet/conv2_bn/gamma"] == (128,)
    assert len([n for n in table if n.startswith("hnasnet/cell_")
                and n.endswith("/1x1/weights")]) == 12
    # cell 0: H^{l-1} = conv2 (128 ch), H^{l-2} = conv1 (64 ch); every cell needs prev_1x1.
    assert table["hnasnet/cell_0/1x1/weights"] == (1, 1, 128, f)
    assert table["hnasnet/cell_0/prev_1x1/weights"] == (1, 1, 64, f)
    assert table["hnasnet/cell_3/1x1/weights"] == (1, 1, 5 * f, 2 * f)  # down-step
    assert table["hnasnet/cell_5/1x1/weights"] == (1, 1, 5 * 4 * f, 2 * f)  # up-step
    assert table["hnasnet/cell_5/prev_1x1/weights"] == (1, 1, 5 * 2 * f, 2 * f)
    # block 0: atrous_5x5 (left, on H^{l-2}) + separable_3x3_2 (right, on H^{l-1})
    c = 8 * f
    assert table["hnasnet/cell_8/comb_iter_0/left/atrous_5x5/weights"] == (5, 5, c, c)
    assert table["hnasnet/cell_8/comb_iter_0/left/bn_atr_5x5/moving_mean"] == (c,)
    for j in (1, 2):
        assert table[f"hnasnet/cell_8/comb_iter_0/right/separable_3x3_{j}/depthwise_weights"] == (3, 3, c, 1)
        assert table[f"hnasnet/cell_8/comb_iter_0/right/separable_3x3_{j}/pointwise_weights"] == (1, 1, c, c)
        assert table[f"hnasnet/cell_8/comb_iter_0/right/bn_sep_3x3_{j}/beta"] == (c,)
    assert table["hnasnet/cell_8/comb_iter_1/right/atrous_3x3/weights"] == (3, 3, c, c)
    assert table["hnasnet/cell_8/comb_iter_4/left/separable_5x5_2/depthwise_weights"] == (5, 5, c, 1)
    assert table["hnasnet/cell_8/comb_iter_4/right/atrous_5x5/weights"] == (5, 5, c, c)
    assert not any("comb_iter_5" in n or "/BatchNorm/" in n for n in table if n.startswith("hnasnet/"))
    # head: regular ASPP and decoder convs
    assert table["aspp1/weights"] == (3, 3, 10 * f, 256)
    assert not any(n.startswith("aspp1_") for n in table)
    assert table["concat_projection/weights"] == (1, 1, 1280, 256)
    assert table["decoder/feature_projection0/weights"] == (1, 1, 5 * f, 48)
    assert table["decoder/decoder_conv0/decoder_conv0_1/weights"] == (3, 3, 304, 256)
    assert table["decoder/decoder_conv0/decoder_conv0_2/weights"] == (3, 3, 256, 256)
    assert table["decoder/decoder_conv0/decoder_conv0_2/BatchNorm/gamma"] == (256,)
    assert len(table) == 15 + 12 * (10 + 3 * 5 + 7 * 12) + 30 + 15 + 2 == 1370


def test_hnasnet_bn_subscope_option():
    plain, sub = og.hnasnet_table(20, 19, head=False), og.hnasnet_table(20, 19, head=False, bn_subscope=True)
    assert "hnasnet/conv0_bn/beta" in plain and "hnasnet/conv0_bn/BatchNorm/beta" in sub
    assert "hnasnet/cell_0/comb_iter_0/left/bn_atr_5x5/BatchNorm/gamma" in sub
    assert len(plain) == len(sub) and sorted(plain.values()) == sorted(sub.values())


# ---------------------------------------------------------------------------------------------
# Writer and random weights
# ---------------------------------------------------------------------------------------------

def test_write_checkpoint_round_trip(tmp_path):
    table = og.mobilenet_v2_imagenet_table(ema=True, momentum=True, global_step=True)
    weights = og.random_weights(table, seed=7)
    prefix = og.write_checkpoint(tmp_path / "ckpt" / "model.ckpt-30000", weights)
    reader = tf.train.load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map() == og.shape_map(table)
    for name, value in weights.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)
    assert reader.get_variable_to_dtype_map()["global_step"] == tf.int64
    assert reader.get_variable_to_dtype_map()["MobilenetV2/Conv/weights"] == tf.float32
    assert og.read_checkpoint(prefix).keys() == weights.keys()


def test_write_checkpoint_state_file(tmp_path):
    prefix = og.write_checkpoint(tmp_path / "model.ckpt", {"a/weights": np.ones((1, 1, 2, 3), np.float32)},
                                 state_file=True)
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(prefix)
    with pytest.raises(ValueError):
        og.write_checkpoint(tmp_path / "empty", {})


def test_random_weights_scales_and_determinism():
    table = og.deeplab_table("mobilenetv2_dpc", NUM_CLASSES)
    a, b = og.random_weights(table, seed=1), og.random_weights(table, seed=1)
    assert all(np.array_equal(a[n], b[n]) for n in table)
    assert not np.array_equal(a["MobilenetV2/Conv/weights"],
                              og.random_weights(table, seed=2)["MobilenetV2/Conv/weights"])
    # a value depends on (seed, name) only: a sub-table gets the same numbers
    sub = {n: s for n, s in table.items() if n.startswith("meta_architecture/")}
    assert all(np.array_equal(og.random_weights(sub, seed=1)[n], a[n]) for n in sub)
    for name, shape in table.items():
        value = a[name]
        assert value.shape == shape and value.dtype == np.float32 and np.isfinite(value).all()
        if shape.kind == og.MOVING_VARIANCE:
            assert value.min() >= 0.5 and value.max() <= 1.5
        if shape.kind == og.GAMMA and shape.gain == 1.0:
            assert 0.8 <= value.min() and value.max() <= 1.2
        if shape.kind in (og.BETA, og.BIAS):
            assert np.abs(value).max() <= 0.1
    kernel = a["meta_architecture/branch1_pointwise/weights"]  # input rectified: He
    assert kernel.std() == pytest.approx(np.sqrt(2 / 256), rel=0.05)
    plain = og.random_weights({"x/weights": (3, 3, 64, 64), "x/BatchNorm/gamma": (64,),
                               "x/weights/ExponentialMovingAverage": (3, 3, 64, 64)}, seed=0)
    assert plain["x/weights"].std() == pytest.approx(np.sqrt(2 / 576), rel=0.05)
    assert not np.array_equal(plain["x/weights"], plain["x/weights/ExponentialMovingAverage"])


# ---------------------------------------------------------------------------------------------
# Hand-checkable pieces of the numerics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, rate, expected", [
    (3, 1, ((1, 1), (1, 1))), (3, 2, ((2, 2), (2, 2))), (2, 1, ((0, 1), (0, 1))),
    (1, 1, ((0, 0), (0, 0))), ((3, 3), (6, 3), ((6, 6), (3, 3))), (4, 1, ((1, 2), (1, 2)))])
def test_fixed_padding_matches_numpy(kernel, rate, expected):
    x = np.arange(2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)
    want = np.pad(x, ((0, 0), expected[0], expected[1], (0, 0)))
    np.testing.assert_array_equal(og.fixed_padding(tf.constant(x), kernel, rate).numpy(), want)


def test_explicit_padding_strided_conv_by_hand():
    # 3×3 stride-2 conv on a 6×6 map: explicit symmetric padding centres the outputs on input
    # pixels 0, 2, 4; Keras/TF SAME pads (0, 1) and centres them on 1, 3, 5 (off by one).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6, 6, 1)).astype(np.float32)
    k = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    padded = np.pad(x[0, :, :, 0], 1)
    want = np.array([[np.sum(padded[2 * i:2 * i + 3, 2 * j:2 * j + 3] * k[:, :, 0, 0]) for j in range(3)]
                     for i in range(3)])
    w = og.WeightReader({"c/weights": k}, None)
    got = og.conv(w, tf.constant(x), "c", stride=2, padding="explicit").numpy()[0, :, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    same = og.conv(w, tf.constant(x), "c", stride=2, padding="SAME").numpy()[0, :, :, 0]
    assert not np.allclose(same, want, atol=1e-3)


def test_resize_align_corners_2x2_to_3x3_by_hand():
    x = tf.constant([[0.0, 1.0], [2.0, 3.0]])[None, :, :, None]
    got = og.resize_bilinear(x, (3, 3)).numpy()[0, :, :, 0]
    np.testing.assert_allclose(got, [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]], atol=1e-6)
    # align_corners: a k·OS+1 grid maps corner to corner (5 → 9: every other output is an input)
    y = tf.constant(np.arange(5, dtype=np.float32))[None, None, :, None]
    np.testing.assert_allclose(og.resize_bilinear(y, (1, 9)).numpy().ravel(), np.arange(9) / 2, atol=1e-6)


def test_atrous_schedule_by_hand():
    xception = [b.stride for b in og.xception_blocks("xception_65") for _ in range(b.units)]
    os16 = og.atrous_schedule(xception, 16)
    assert os16[:3] == [(2, 1), (2, 1), (2, 1)]  # entry blocks reach OS 16
    assert set(os16[3:19]) == {(1, 1)}  # middle flow
    assert os16[19:] == [(1, 1), (1, 2)]  # exit block1 loses its stride; block2 at rate 2
    os8 = og.atrous_schedule(xception, 8)
    assert os8[:3] == [(2, 1), (2, 1), (1, 1)] and set(os8[3:19]) == {(1, 2)} and os8[19:] == [(1, 2), (1, 4)]
    mobilenet = og.atrous_schedule([u[2] for u in og.MOBILENET_V2_UNITS], 16)
    assert mobilenet[13] == (1, 1) and mobilenet[14:] == [(1, 2)] * 3
    assert mobilenet[:13] == [(u[2], 1) for u in og.MOBILENET_V2_UNITS[:13]]


def _identity_bn(channels, eps):
    # moving_variance = 1 − eps: the batch norm is exactly the identity
    return {"beta": np.zeros(channels, np.float32), "gamma": np.ones(channels, np.float32),
            "moving_mean": np.zeros(channels, np.float32),
            "moving_variance": np.full(channels, 1 - eps, np.float32)}


def test_image_pooling_window_and_global_mean():
    assert og.image_pooling_window((513, 513), 16) == (33, 33)
    assert og.image_pooling_window((769, 769), 8) == (97, 97)
    assert og.image_pooling_window((1025, 2049), 16) == (65, 129)
    rng = np.random.default_rng(0)
    f = rng.standard_normal((1, 5, 7, 4)).astype(np.float32)
    weights = {"image_pooling/weights": np.eye(4, dtype=np.float32)[None, None]}
    weights.update({f"image_pooling/BatchNorm/{k}": v for k, v in _identity_bn(4, og.HEAD_BN_EPS).items()})
    w = og.WeightReader(weights, None)
    # image == crop (65×97 at OS 16 → 5×7 features): a global mean, broadcast
    got = og.pooling_branch(w, tf.constant(f), "image_pooling", og.image_pooling_window((65, 97), 16)).numpy()
    np.testing.assert_allclose(got, np.broadcast_to(np.maximum(f.mean(axis=(1, 2), keepdims=True), 0), f.shape),
                               atol=1e-5)
    # a smaller crop (33×49 → window 3×4): 3×4 pooled map, resized back corner to corner
    got = og.pooling_branch(w, tf.constant(f), "image_pooling", og.image_pooling_window((33, 49), 16)).numpy()
    pooled = np.maximum(np.array([[f[0, i:i + 3, j:j + 4].mean(axis=(0, 1)) for j in range(4)] for i in range(3)]), 0)
    np.testing.assert_allclose(got[0, 0, 0], pooled[0, 0], atol=1e-5)
    np.testing.assert_allclose(got[0, -1, -1], pooled[-1, -1], atol=1e-5)
    np.testing.assert_allclose(got[0, 2, 2], pooled[1, 1], atol=1e-5)  # (2, 2) → (2·2/4, 2·3/6) = (1, 1)
    with pytest.raises(ValueError, match="exceeds"):
        og.pooling_branch(w, tf.constant(f), "image_pooling", og.image_pooling_window((97, 97), 16))


# ---------------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------------

_WEIGHTS = {}


def _weights(model):
    if model not in _WEIGHTS:
        _WEIGHTS[model] = og.random_weights(og.deeplab_table(model, NUM_CLASSES), seed=11)
    return _WEIGHTS[model]


def _images(h, w, seed=0, n=2):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype(np.uint8)


@pytest.mark.parametrize("model", ["xception71_dpc", "mobilenetv2_deeplabv3"])
@pytest.mark.parametrize("size", [(65, 65), (49, 81)])
def test_forward_is_finite_and_order_one(model, size):
    images = _images(*size)
    logits = og.official_logits(_weights(model), images, model, output_stride=16, crop_size=size,
                                num_classes=NUM_CLASSES).numpy()
    assert logits.shape == (2, *size, NUM_CLASSES)
    assert np.isfinite(logits).all()
    assert 0.05 < logits.std() < 10 and np.abs(logits).max() < 50
    # the image matters (the signal survives ~70 layers), not only biases and BN offsets
    assert np.abs(logits[0] - logits[1]).mean() > 0.05 * logits.std()
    # uint8 and float pixels are the same input
    np.testing.assert_allclose(
        og.official_logits(_weights(model), images.astype(np.float32), model, crop_size=size).numpy(),
        logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", sorted(og.MODELS))
def test_forward_reads_exactly_its_table(model):
    used = set()
    logits = og.official_logits(_weights(model), _images(33, 33, n=1), model, used=used)
    assert logits.shape == (1, 33, 33, NUM_CLASSES) and np.isfinite(logits.numpy()).all()
    assert used == set(og.deeplab_table(model, NUM_CLASSES))


def test_forward_feature_sizes():
    w = og.WeightReader(_weights("xception71_dpc"), None)
    x = og.preprocess(_images(49, 81, n=1))
    features, low = og.xception_features(w, x, "xception_71", 16)
    assert features.shape == (1, 4, 6, 2048) and low.shape == (1, 13, 21, 256)
    assert (4, 6) == (og.scale_dimension(49, 1 / 16), og.scale_dimension(81, 1 / 16))
    assert (13, 21) == (og.scale_dimension(49, 1 / 4), og.scale_dimension(81, 1 / 4))
    features = og.mobilenet_v2_features(og.WeightReader(_weights("mobilenetv2_deeplabv3"), None), x, 8)
    assert features.shape == (1, 7, 11, 320)


def test_forward_output_stride_8_and_larger_image_than_crop():
    model = "mobilenetv2_deeplabv3"
    os8 = og.official_logits(_weights(model), _images(33, 33, n=1), model, output_stride=8).numpy()
    os16 = og.official_logits(_weights(model), _images(33, 33, n=1), model, output_stride=16).numpy()
    assert os8.shape == os16.shape and np.isfinite(os8).all() and not np.allclose(os8, os16, atol=1e-3)
    # an image larger than the crop runs (pooling window from the crop); a smaller one cannot
    images = _images(65, 65, n=1)
    assert og.official_logits(_weights(model), images, model, crop_size=(33, 33)).shape == (1, 65, 65, 3)
    with pytest.raises(ValueError, match="crop"):
        og.official_logits(_weights(model), images, model, crop_size=(97, 97))


def test_forward_from_a_written_checkpoint(tmp_path):
    model = "mobilenetv2_deeplabv3"
    prefix = og.write_checkpoint(tmp_path / "model.ckpt", _weights(model))
    images = _images(33, 33, n=1)
    np.testing.assert_array_equal(og.official_logits(og.read_checkpoint(prefix), images, model).numpy(),
                                  og.official_logits(_weights(model), images, model).numpy())


def test_forward_names_a_missing_variable():
    weights = dict(_weights("mobilenetv2_deeplabv3"))
    del weights["MobilenetV2/expanded_conv_7/depthwise/BatchNorm/gamma"]
    with pytest.raises(KeyError, match="expanded_conv_7/depthwise/BatchNorm/gamma"):
        og.official_logits(weights, _images(33, 33, n=1), "mobilenetv2_deeplabv3")
    with pytest.raises(ValueError, match="num_classes"):
        og.official_logits(_weights("mobilenetv2_deeplabv3"), _images(33, 33, n=1), "mobilenetv2_deeplabv3",
                           num_classes=19)
