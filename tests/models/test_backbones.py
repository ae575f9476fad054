"""MobileNet-v2 and Xception-65/71 backbones: endpoints at every output stride, parameter
counts against Keras' MobileNetV2 and channel arithmetic, gradients, JAX parity."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_checks import check_layer, run_on_jax
from nasseg_tf.models.mobilenet_v2 import (atrous_schedule, make_divisible,
                                           mobilenet_v2_backbone)
from nasseg_tf.layers.common import ConvBN
from nasseg_tf.models.xception import XceptionSeparableConv, xception_backbone

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


def _model(backbone_fn, **kwargs):
    images = keras.Input(shape=(None, None, 3), name="images")
    endpoints = backbone_fn(images, **kwargs)
    assert endpoints["output_stride"] == kwargs.get("output_stride", 16)
    return keras.Model(images, [endpoints["features"], endpoints["low_level"]])


@pytest.fixture(scope="module")
def xception():
    """``xception(depth, output_stride)``: each graph built once per module (seconds)."""
    cache = {}

    def get(depth, output_stride):
        if (depth, output_stride) not in cache:
            cache[depth, output_stride] = _model(xception_backbone, depth=depth,
                                                 output_stride=output_stride)
        return cache[depth, output_stride]

    yield get
    cache.clear()


def _size_after(n, stride):
    """Spatial size after ``log2(stride)`` stride-2 steps (each ``ceil(n / 2)``)."""
    while stride > 1:
        n, stride = -(-n // 2), stride // 2
    return n


def _n_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _producer(tensor):
    return tensor._keras_history.operation.name  # pylint: disable=protected-access


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype("float32")


def _gradients(model, x, seed):
    """(variable, gradient) pairs of a random projection of both endpoints.

    A plain sum would give zero gradients through batch norm.
    """
    rng = np.random.default_rng(seed)
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
        loss = sum(tf.reduce_sum(y * rng.normal(size=y.shape).astype("float32"))
                   for y in outputs)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) > 0
    return list(zip(model.trainable_variables, grads))


# ------------------------------------------------------------------------------------
# Output stride and channel rounding.


def test_atrous_schedule_turns_strides_into_rates_after_output_stride():
    assert atrous_schedule([2, 2, 1, 2, 2, 1], 8) == [
        (2, 1), (2, 1), (1, 1), (2, 1), (1, 1), (1, 2)]
    assert atrous_schedule([2, 2, 2, 2, 2, 1], 8) == [
        (2, 1), (2, 1), (2, 1), (1, 1), (1, 2), (1, 4)]
    assert atrous_schedule([2, 2, 2], 8) == [(2, 1), (2, 1), (2, 1)]


def test_atrous_schedule_rejects_an_unreachable_output_stride():
    with pytest.raises(ValueError, match="natural stride 8"):
        atrous_schedule([2, 2, 2], 16)


@pytest.mark.parametrize("value,expected", [(32, 32), (16 * 0.5, 8), (32 * 0.35, 16),
                                            (24 * 0.75, 24), (320 * 1.4, 448), (3, 8)])
def test_make_divisible_rounds_to_multiples_of_eight_losing_at_most_ten_percent(
        value, expected):
    assert make_divisible(value) == expected


@pytest.mark.parametrize("bad", [dict(output_stride=4), dict(output_stride=12)])
def test_unsupported_output_strides_are_rejected(bad):
    images = keras.Input(shape=(None, None, 3))
    with pytest.raises(ValueError, match="output_stride must be one of"):
        mobilenet_v2_backbone(images, **bad)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        xception_backbone(images, **bad)


def test_unknown_xception_depth_lists_known_ones():
    with pytest.raises(ValueError, match="unknown Xception depth 41; known: 65, 71"):
        xception_backbone(keras.Input(shape=(None, None, 3)), depth=41)


# ------------------------------------------------------------------------------------
# MobileNet-v2.


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_mobilenet_v2_endpoints_at_each_output_stride(output_stride):
    model = _model(mobilenet_v2_backbone, output_stride=output_stride,
                   depth_multiplier=0.5)
    h, w = 65, 47  # 65 = 16·4 + 1: (65 - 1) / 16 + 1 = 5 at OS 16
    features, low_level = model(_images((1, h, w, 3)), training=False)
    assert tuple(features.shape) == (1, _size_after(h, output_stride),
                                     _size_after(w, output_stride), 160)
    assert tuple(low_level.shape) == (1, 17, 12, 16)  # 24·0.5 → 16 channels at OS 4
    if output_stride == 16:
        assert features.shape[1] == (h - 1) // 16 + 1 == 5


def test_mobilenet_v2_full_width_channels_and_low_level_block():
    model = _model(mobilenet_v2_backbone, output_stride=16)
    features, low_level = model.outputs
    assert features.shape[-1] == 320 and low_level.shape[-1] == 24
    assert _producer(low_level) == "block2_add"  # the second 24-channel block (residual)
    assert _producer(features) == "block16_project_bn"  # no final 1280 conv


def test_name_prefix_applies_to_every_layer():
    for backbone_fn in (mobilenet_v2_backbone, xception_backbone):
        model = _model(backbone_fn, name_prefix="bb_")
        names = [layer.name for layer in model.layers[1:]]  # after the input
        assert names and all(name.startswith("bb_") for name in names), names


@pytest.mark.parametrize("depth_multiplier", [1.0, 0.5])
def test_mobilenet_v2_params_equal_keras_applications_without_final_conv(
        depth_multiplier):
    reference = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(224, 224, 3),
        alpha=depth_multiplier)
    final = [reference.get_layer(name) for name in ("Conv_1", "Conv_1_bn")]
    model = _model(mobilenet_v2_backbone, output_stride=32,
                   depth_multiplier=depth_multiplier)
    expected = reference.count_params() - sum(layer.count_params() for layer in final)
    assert model.count_params() == expected
    final_trainable = sum(_n_params(layer.trainable_weights) for layer in final)
    assert (_n_params(model.trainable_weights)
            == _n_params(reference.trainable_weights) - final_trainable)
    # Atrous conversion changes no weight.
    assert _model(mobilenet_v2_backbone, output_stride=8,
                  depth_multiplier=depth_multiplier).count_params() == expected


def test_every_mobilenet_v2_variable_gets_a_finite_nonzero_gradient():
    model = _model(mobilenet_v2_backbone, output_stride=8, depth_multiplier=0.5)
    for var, grad in _gradients(model, _images((2, 33, 41, 3), seed=1), seed=2):
        assert grad is not None, f"no gradient for {var.path}"
        assert np.all(np.isfinite(grad)), f"non-finite gradient for {var.path}"
        assert np.any(np.asarray(grad) != 0), f"zero gradient for {var.path}"


def test_mobilenet_v2_model_config_round_trip_computes_the_same_function():
    model = _model(mobilenet_v2_backbone, output_stride=16, depth_multiplier=0.5)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = _images((1, 37, 33, 3), seed=3)
    for a, b in zip(model(x, training=False), clone(x, training=False)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("explicit_padding", [True, False])
def test_mobilenet_v2_strided_convs_pad_like_their_tensorflow_reference(explicit_padding):
    # False: slim's TF 'SAME' (official DeepLab graph); True: symmetric tf.pad + VALID.
    model = _model(mobilenet_v2_backbone, output_stride=8, depth_multiplier=0.5,
                   explicit_padding=explicit_padding)
    strided = {"stem_conv": "stem_pad", "block1_depthwise": "block1_pad",
               "block3_depthwise": "block3_pad"}
    first = {name: model.get_layer(pad if explicit_padding else name)
             for name, pad in strided.items()}  # where the padding starts
    probe = keras.Model(model.input, [t for name in strided for t in (
        first[name].input, model.get_layer(name).output)])
    x = _images((1, 34, 40, 3), seed=8)  # even sizes: the two paddings differ
    outputs = [np.asarray(y) for y in probe(x, training=False)]
    for i, name in enumerate(strided):
        inputs, ours = outputs[2 * i: 2 * i + 2]
        kernel = model.get_layer(name).kernel
        if name == "stem_conv":
            conv = tf.nn.conv2d
        else:
            def conv(v, k, s, p):
                return tf.nn.depthwise_conv2d(v, k, [1, s, s, 1], p)
        if explicit_padding:
            expected = conv(tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel, 2,
                            "VALID")
        else:
            expected = conv(inputs, kernel, 2, "SAME")
        np.testing.assert_allclose(ours, np.asarray(expected), rtol=0, atol=1e-5)
    pads = [l.name for l in model.layers if isinstance(l, keras.layers.ZeroPadding2D)]
    assert pads == (list(strided.values()) if explicit_padding else [])  # OS 8: 3 strides


def test_mobilenet_v2_padding_modes_share_weights_and_differ_only_on_even_sizes():
    symmetric = _model(mobilenet_v2_backbone, depth_multiplier=0.5)
    same = _model(mobilenet_v2_backbone, depth_multiplier=0.5, explicit_padding=False)
    assert [v.path for v in same.weights] == [v.path for v in symmetric.weights]
    same.set_weights(symmetric.get_weights())
    for size, equal in (((33, 49), True), ((34, 48), False)):
        x = _images((1, *size, 3), seed=9)
        a, b = (np.asarray(m(x, training=False)[0]) for m in (symmetric, same))
        assert np.allclose(a, b, rtol=0, atol=1e-4 * np.abs(a).max()) == equal, size


# ------------------------------------------------------------------------------------
# Xception.


@pytest.mark.parametrize("kwargs,expected", [
    (dict(filters=6), (2, 9, 10, 6)),
    (dict(filters=6, strides=2), (2, 5, 5, 6)),
    (dict(filters=6, dilation_rate=(2, 3), activation_inside=True), (2, 9, 10, 6)),
])
def test_xception_separable_conv_passes_layer_checks(kwargs, expected):
    check_layer(lambda: XceptionSeparableConv(**kwargs), (2, 9, 10, 4), expected)


@pytest.mark.parametrize("depth,output_stride", [(65, 8), (65, 16), (71, 16)])
def test_xception_endpoints_at_each_output_stride(xception, depth, output_stride):
    model = xception(depth, output_stride)
    h, w = 33, 35
    features, low_level = model(_images((1, h, w, 3)), training=False)
    assert tuple(features.shape) == (1, _size_after(h, output_stride),
                                     _size_after(w, output_stride), 2048)
    assert tuple(low_level.shape) == (1, 9, 9, 256)
    assert np.all(np.asarray(features) >= 0)  # exit block 2 ends in a ReLU


@pytest.mark.parametrize("depth,low_level_block", [(65, "entry_block2"),
                                                   (71, "entry_block3")])
def test_xception_low_level_is_the_second_sep_conv_of_the_block_from_os4_to_os8(
        xception, depth, low_level_block):
    model = xception(depth, 16)
    assert _producer(model.outputs[1]) == f"{low_level_block}_sep2"
    # Depth = two entry convs + three separable convs per block.
    seps = [l for l in model.layers if isinstance(l, ConvBN) and l.separable]
    assert 2 + len(seps) == depth


def _bn(channels):
    return 4 * channels  # gamma, beta, moving mean, moving variance


def _sep(c_in, c_out):
    return 9 * c_in + _bn(c_in) + c_in * c_out + _bn(c_out)


def _conv_shortcut_block(c_in, depth):
    return (_sep(c_in, depth) + 2 * _sep(depth, depth)  # three separable convs
            + c_in * depth + _bn(depth))                 # 1×1 conv shortcut


def test_xception_71_adds_exactly_its_two_extra_entry_blocks(xception):
    # 71's entry blocks 2 (128→256) and 4 (256→728) have the weights of 65's blocks 2
    # and 3; its blocks 3 (256→256 /2) and 5 (728→728 /2) are the extra ones.
    extra = _conv_shortcut_block(256, 256) + _conv_shortcut_block(728, 728)
    assert (xception(71, 16).count_params() - xception(65, 16).count_params()
            == extra == 2_436_200)
    assert xception(65, 8).count_params() == xception(65, 16).count_params()


def test_xception_gradients_reach_every_variable(xception):
    model = xception(65, 16)
    for var, grad in _gradients(model, _images((2, 33, 33, 3), seed=4), seed=5):
        assert grad is not None, f"no gradient for {var.path}"
        assert np.all(np.isfinite(grad)), f"non-finite gradient for {var.path}"


# ------------------------------------------------------------------------------------
# JAX backend.


def _separable_pair():
    """Two Xception separable convs (strided; atrous with inner ReLUs) as one model.

    The JAX script below builds the same model.
    """
    x = keras.Input(shape=(None, None, 3))
    y = XceptionSeparableConv(8, strides=2, name="sep_strided")(x)
    y = XceptionSeparableConv(8, dilation_rate=(2, 3), activation_inside=True,
                              name="sep_atrous")(y)
    return keras.Model(x, y)


_JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from nasseg_tf.models.mobilenet_v2 import mobilenet_v2_backbone
    from nasseg_tf.models.xception import XceptionSeparableConv as Sep
    folder = sys.argv[1]
    x = np.load(folder + "/x.npy")
    images = keras.Input(shape=(None, None, 3))
    ends = mobilenet_v2_backbone(images, output_stride=8, depth_multiplier=0.5)
    y = Sep(8, strides=2, name="sep_strided")(images)
    y = Sep(8, dilation_rate=(2, 3), activation_inside=True, name="sep_atrous")(y)
    models = {"mobilenet": keras.Model(images, [ends["features"], ends["low_level"]]),
              "separable": keras.Model(images, y)}
    for name, model in models.items():
        model.load_weights(f"{folder}/{name}.weights.h5")
        outputs = model(x, training=False)
        for i, y in enumerate(outputs if isinstance(outputs, list) else [outputs]):
            np.save(f"{folder}/{name}_{i}.npy", np.asarray(y))
""")


def test_backbones_on_jax_backend_match_tensorflow(tmp_path):
    # MobileNet-v2 whole; Xception through its own layer (ConvBN is checked elsewhere;
    # the whole Xception on JAX costs ~20 s of variable-initialiser compiles).
    pytest.importorskip("jax")
    x = _images((1, 41, 37, 3), seed=6)
    np.save(tmp_path / "x.npy", x)
    models = {"mobilenet": _model(mobilenet_v2_backbone, output_stride=8,
                                  depth_multiplier=0.5),
              "separable": _separable_pair()}
    expected = {}
    for name, model in models.items():
        # Non-trivial moving statistics, so inference-mode BN is compared too.
        rng = np.random.default_rng(7)
        for var in model.non_trainable_variables:
            value = (rng.uniform(0.5, 1.5, size=var.shape) if "variance" in var.path
                     else rng.normal(0, 0.1, size=var.shape))
            var.assign(value.astype("float32"))
        model.save_weights(str(tmp_path / f"{name}.weights.h5"))
        outputs = model(x, training=False)
        expected[name] = [np.asarray(y) for y in
                          (outputs if isinstance(outputs, list) else [outputs])]
    run_on_jax(_JAX_SCRIPT, tmp_path)
    for name, outputs in expected.items():
        for i, y in enumerate(outputs):
            assert np.abs(y).max() > 0, (name, i)
            np.testing.assert_allclose(np.load(tmp_path / f"{name}_{i}.npy"), y,
                                       rtol=1e-4, atol=1e-4 * np.abs(y).max())
