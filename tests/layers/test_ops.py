"""Candidate ops: shapes, config, gradients, mirrored step; semantics of each op."""

import keras
import numpy as np
import pytest

from layer_checks import check_layer
from nasseg_tf.layers import ops as ops_lib
from nasseg_tf.search_space.autodeeplab import PRIMITIVES

SHAPE = (2, 9, 11, 6)


def _expected(stride, filters=6):
    return (2, -(-9 // stride), -(-11 // stride), filters)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op_name", PRIMITIVES)
def test_every_candidate_op_passes_layer_checks(op_name, stride):
    check_layer(lambda: ops_lib.build_op(op_name, 6, stride), SHAPE, _expected(stride))


@pytest.mark.parametrize("op_name", ["avg_pool_3x3", "skip_connect"])
def test_ops_project_when_channels_change(op_name):
    layer = check_layer(lambda: ops_lib.build_op(op_name, 8, 1), SHAPE, _expected(1, 8))
    assert layer.project is not None


def test_registry_covers_the_search_space():
    assert set(ops_lib.known_ops()) == set(PRIMITIVES)


def test_unknown_op_lists_known_ones():
    with pytest.raises(ValueError, match="unknown op 'conv_7x7'.*sep_conv_3x3"):
        ops_lib.build_op("conv_7x7", 4)


def test_skip_is_identity_without_stride():
    layer = ops_lib.build_op("skip_connect", 6, 1)
    x = np.random.default_rng(0).normal(size=SHAPE).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert not layer.weights


def test_zero_op_outputs_zeros_of_the_strided_shape():
    layer = ops_lib.build_op("none", 5, 2)
    y = np.asarray(layer(np.ones(SHAPE, "float32")))
    assert y.shape == (2, 5, 6, 5) and not np.any(y)


def test_sep_conv_is_two_separable_convs_with_stride_in_first():
    layer = ops_lib.build_op("sep_conv_5x5", 6, 2)
    layer(np.zeros(SHAPE, "float32"))
    assert [c.strides for c in layer.convs] == [2, 1]
    kernels = [v for v in layer.trainable_weights if v.path.endswith("kernel")]
    # depthwise 5x5x6x1 and pointwise 1x1x6x6, twice.
    assert sorted(tuple(k.shape) for k in kernels) == sorted(
        [(5, 5, 6, 1), (1, 1, 6, 6)] * 2)


def test_atrous_conv_is_regular_rate_two_conv():
    layer = ops_lib.build_op("atrous_conv_3x3", 6, 1)
    layer(np.zeros(SHAPE, "float32"))
    conv = layer.conv.conv
    assert isinstance(conv, keras.layers.Conv2D)
    assert not isinstance(conv, keras.layers.DepthwiseConv2D)
    assert tuple(conv.dilation_rate) == (2, 2) and tuple(conv.kernel.shape) == (3, 3, 6, 6)


def test_strided_atrous_conv_resizes_then_uses_rate_one():
    layer = ops_lib.build_op("atrous_conv_5x5", 6, 2)
    y = layer(np.zeros(SHAPE, "float32"))
    assert tuple(layer.conv.conv.dilation_rate) == (1, 1)
    assert tuple(y.shape) == _expected(2)


@pytest.mark.parametrize("align_corners", [False, True])
def test_strided_atrous_conv_resizes_in_its_convention(align_corners):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    layer = ops_lib.build_op("atrous_conv_3x3", 4, 2, align_corners=align_corners)
    x = np.random.default_rng(0).normal(size=(1, 9, 12, 4)).astype("float32")
    y = layer(x, training=False)
    resized = (tf.compat.v1.image.resize_bilinear(tf.nn.relu(x), (5, 6), align_corners=True)
               if align_corners else tf.image.resize(tf.nn.relu(x), (5, 6)))
    conv = layer.conv
    expected = conv.norm(conv.conv(resized), training=False)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    config = layer.get_config()
    assert config["align_corners"] is align_corners
    del config["align_corners"]  # a layer saved before the option: half-pixel centres
    assert ops_lib.AtrousConvOp.from_config(config).align_corners is False


def test_dilated_separable_op_is_relu_dilated_depthwise_pointwise_bn():
    """The search-only DARTS dil_conv: checks, then the function written out."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    layer = check_layer(lambda: ops_lib.DilatedSepConvOp(6, 5, rate=2), SHAPE,
                        _expected(1))
    conv = layer.conv
    assert tuple(conv.depthwise.dilation_rate) == (2, 2)
    assert sorted(tuple(w.shape) for w in layer.trainable_weights
                  if w.path.endswith("kernel")) == [(1, 1, 6, 6), (5, 5, 6, 1)]
    x = np.random.default_rng(1).normal(size=SHAPE).astype("float32")
    want = tf.nn.depthwise_conv2d(tf.nn.relu(x), conv.depthwise.kernel, (1, 1, 1, 1),
                                  "SAME", dilations=(2, 2))
    want = conv.norm(tf.nn.conv2d(want, conv.conv.kernel, 1, "SAME"), training=False)
    np.testing.assert_allclose(layer(x, training=False), want, atol=1e-5)
    assert "DilatedSepConvOp" not in ops_lib.known_ops()  # not a primitive
    with pytest.raises(ValueError, match="stride must be 1"):
        ops_lib.DilatedSepConvOp(6, 3, stride=2)
