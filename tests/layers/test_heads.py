"""ASPP, image pooling and the DeepLabv3+ decoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_checks import check_layer
from nasseg_tf.layers.heads import ASPP, DeepLabV3PlusDecoder, ImagePooling


@pytest.mark.parametrize("separable", [False, True])
def test_aspp_passes_layer_checks(separable):
    check_layer(lambda: ASPP(8, (1, 2, 3), separable=separable), (2, 7, 9, 6), (2, 7, 9, 8))


def test_aspp_params_match_the_regular_conv_configuration():
    aspp = ASPP(256, (12, 24, 36))
    aspp(np.zeros((1, 5, 5, 200), "float32"))
    convs = 200 * 256 * (1 + 9 * 3 + 1) + 5 * 256 * 256
    bn = 6 * 2 * 256
    assert sum(int(np.prod(v.shape)) for v in aspp.trainable_weights) == convs + bn


def test_image_pooling_passes_layer_checks():
    check_layer(lambda: ImagePooling(4), (2, 5, 6, 3), (2, 5, 6, 4))


def test_image_pooling_with_batch_one_is_finite_and_learns_without_bn():
    x = np.random.default_rng(0).normal(size=(1, 5, 6, 3)).astype("float32")
    y = np.asarray(ImagePooling(4)(x, training=True))
    assert np.all(np.isfinite(y))
    # 16 ReLU units: the chance that all are dead for the single pooled vector is 2^-16.
    keras.utils.set_random_seed(0)
    check_layer(lambda: ImagePooling(16, use_bn=False), (1, 5, 6, 3), (1, 5, 6, 16))


@pytest.mark.parametrize("separable", [False, True])
def test_decoder_passes_layer_checks(separable):
    check_layer(lambda: DeepLabV3PlusDecoder(8, 4, separable=separable),
                [(2, 5, 6, 7), (2, 17, 21, 3)], (2, 17, 21, 8))


# ------------------------------------------------------------------------------------
# Official numerics (SPEC §7): fixed image-pooling window, aligned corners, BN epsilon.


def _random_bn(layer, seed=0):
    """Non-trivial moving statistics, so inference-mode batch norm is compared too."""
    rng = np.random.default_rng(seed)
    for var in layer.non_trainable_variables:
        value = (rng.uniform(0.5, 1.5, var.shape) if "variance" in var.path
                 else rng.normal(0, 0.3, var.shape))
        var.assign(value.astype("float32"))


def _tf1_conv_bn_relu(conv_bn, x):
    """conv → BN (inference) → ReLU with TensorFlow ops and the ConvBN's weights."""
    y = tf.nn.conv2d(x, conv_bn.conv.kernel, 1, "VALID")
    bn = conv_bn.norm
    y = tf.nn.batch_normalization(y, bn.moving_mean, bn.moving_variance, bn.beta,
                                  bn.gamma, bn.epsilon)
    return tf.nn.relu(y)


def test_image_pooling_over_the_crop_window_equals_the_official_graph():
    # Crop 33x49 at OS 8: window (33-1)//8+1 = 5 by (49-1)//8+1 = 7, VALID, stride 1,
    # then 1x1 conv + BN + ReLU, then resize back with aligned corners.
    layer = ImagePooling(4, output_stride=8, pool_crop_size=(33, 49), align_corners=True,
                         bn_epsilon=1e-5)
    x = np.random.default_rng(0).normal(size=(2, 9, 12, 3)).astype("float32")
    layer(x)
    _random_bn(layer)
    assert layer.kernel_size((9, 12)) == (5, 7)
    pooled = tf.nn.avg_pool2d(x, (5, 7), 1, "VALID")  # 5x6
    expected = tf.compat.v1.image.resize_bilinear(
        _tf1_conv_bn_relu(layer.conv, pooled), (9, 12), align_corners=True)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected.numpy(),
                               rtol=0, atol=1e-5)
    # At the crop's own feature size (5x7) the window is the whole map: a global mean.
    at_crop = x[:, :5, :7]
    glob = _tf1_conv_bn_relu(layer.conv, at_crop.mean(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(np.asarray(layer(at_crop, training=False)),
                               np.broadcast_to(glob.numpy(), (2, 5, 7, 4)), atol=1e-5)


def test_image_pooling_keeps_its_variables_and_old_configs_mean_global_pooling():
    layer = ImagePooling(4, output_stride=8, pool_crop_size=(17, 17), align_corners=True,
                         name="image_pooling")
    x = np.random.default_rng(1).normal(size=(1, 6, 7, 3)).astype("float32")
    layer(x)
    assert [v.path for v in layer.weights] == [  # as before ImagePooling had a window
        "image_pooling/conv/conv/kernel", "image_pooling/conv/bn/gamma",
        "image_pooling/conv/bn/beta", "image_pooling/conv/bn/moving_mean",
        "image_pooling/conv/bn/moving_variance"]
    saved_before = {"name": "image_pooling", "trainable": True, "dtype": "float32",
                    "filters": 4, "use_bn": True, "bn_momentum": 0.9997,
                    "bn_epsilon": 0.001}
    old = ImagePooling.from_config(saved_before)
    old(x)
    old.set_weights(layer.get_weights())
    expected = old.conv(x.mean(axis=(1, 2), keepdims=True), training=False)
    np.testing.assert_allclose(np.asarray(old(x, training=False)),
                               np.broadcast_to(np.asarray(expected), (1, 6, 7, 4)),
                               atol=1e-6)


def test_image_pooling_with_a_crop_window_passes_layer_checks():
    layer = check_layer(lambda: ImagePooling(4, output_stride=4, pool_crop_size=(9, 13),
                                             align_corners=True),
                        (2, 5, 6, 3), (2, 5, 6, 4))
    assert "grid_size" not in layer.get_config()


@pytest.mark.parametrize("crop", [None, (17, 25)])
def test_image_pooling_serves_dynamic_sizes_like_static_ones(crop):
    layer = ImagePooling(4, output_stride=4, pool_crop_size=crop, align_corners=True)
    x = np.random.default_rng(2).normal(size=(1, 7, 9, 3)).astype("float32")
    static = np.asarray(layer(x, training=False))
    served = tf.function(lambda z: layer(z, training=False), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
    np.testing.assert_allclose(served(x).numpy(), static, atol=1e-5)


def test_aspp_without_atrous_rates_is_the_official_mobilenet_v2_head():
    # image pooling + aspp0 only, concat_projection 512 -> 256 (SPEC §7).
    aspp = ASPP(256, (), image_pooling=True)
    aspp(np.zeros((1, 5, 5, 320), "float32"))
    assert [b.name for b in aspp.branches] == ["conv_1x1", "image_pooling"]
    assert tuple(aspp.projection.conv.kernel.shape) == (1, 1, 512, 256)


def test_aspp_gives_image_pooling_its_window_and_convention():
    aspp = ASPP(8, (1, 2), output_stride=8, pool_crop_size=(33, 33), align_corners=True,
                bn_epsilon=1e-5)
    pooling = aspp.branches[-1]
    assert (pooling.pool_crop_size, pooling.output_stride) == ((33, 33), 8)
    assert pooling.align_corners and pooling.bn_epsilon == 1e-5
    config = aspp.get_config()
    assert config["pool_crop_size"] == [33, 33] and config["align_corners"] is True
    check_layer(lambda: ASPP.from_config(config), (2, 7, 9, 6), (2, 7, 9, 8))


def test_decoder_upsamples_with_aligned_corners_like_the_official_graph():
    decoder = DeepLabV3PlusDecoder(8, 4, separable=True, align_corners=True,
                                   bn_epsilon=1e-5)
    rng = np.random.default_rng(3)
    high = rng.normal(size=(1, 5, 6, 7)).astype("float32")
    low = rng.normal(size=(1, 17, 21, 3)).astype("float32")
    decoder([high, low])
    _random_bn(decoder)
    up = tf.compat.v1.image.resize_bilinear(high, (17, 21), align_corners=True)
    x = tf.concat([up, decoder.low_level_projection(low, training=False)], axis=-1)
    for conv in decoder.convs:
        x = conv(x, training=False)
    np.testing.assert_allclose(np.asarray(decoder([high, low], training=False)),
                               np.asarray(x), rtol=0, atol=1e-5)
    assert decoder.get_config()["align_corners"] is True
