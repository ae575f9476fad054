"""ASPP, image pooling and the DeepLabv3+ decoder."""

import keras
import numpy as np
import pytest

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
