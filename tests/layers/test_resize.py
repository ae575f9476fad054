"""Bilinear resize in both conventions against TensorFlow's own kernels: half-pixel
centres (TF2 ``tf.image.resize``) and aligned corners (TF1 ``resize_bilinear(...,
align_corners=True)``, the official DeepLab graph), static and dynamic sizes."""

import json

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from layer_checks import check_layer
from nasseg_tf.layers.resize import ResizeLike, _gather_resize, resize_bilinear

# (input H, W) -> (output H, W): up and down, by whole factors of (size - 1) (DeepLab's
# k·OS + 1 sizes: the gather-free static path) and not, odd and even, sizes of 1.
ALIGNED_CASES = [
    ((5, 3), (65, 33)),    # x16 / x16: logits of a 65x33 crop at OS 16
    ((9, 17), (5, 9)),     # /2: Auto-DeepLab's stride-2 resize of odd sizes
    ((4, 7), (13, 17)),    # up, no whole factor
    ((13, 8), (5, 4)),     # down, no whole factor
    ((6, 5), (11, 10)),    # even and odd mixed
    ((7, 8), (7, 8)),      # identity
    ((1, 1), (5, 4)),      # from one pixel: broadcast
    ((7, 6), (1, 1)),      # to one pixel: the top-left one
    ((1, 6), (4, 1)),
    ((2, 2), (3, 3)),
]


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _dynamic(align_corners):
    """resize_bilinear traced with unknown input and output sizes (as when serving)."""
    return tf.function(
        lambda x, size: resize_bilinear(x, (size[0], size[1]), align_corners),
        input_signature=[tf.TensorSpec([None, None, None, 3]),
                         tf.TensorSpec([2], tf.int32)])


@pytest.mark.parametrize("in_size,out_size", ALIGNED_CASES)
def test_aligned_corners_equal_tf1_resize_bilinear(in_size, out_size):
    x = _images((2, *in_size, 3))
    expected = tf.compat.v1.image.resize_bilinear(x, out_size, align_corners=True).numpy()
    static = np.asarray(resize_bilinear(x, out_size, align_corners=True))
    gathered = np.asarray(_gather_resize(x, out_size, align_corners=True))
    dynamic = _dynamic(True)(x, tf.constant(out_size)).numpy()
    for ours in (static, gathered, dynamic):
        assert ours.shape == expected.shape
        # Measured: 0 (gather, dynamic) and <= 2.4e-7 (whole factors other than 2^n).
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(13, 17), (5, 4), (26, 9), (7, 8), (1, 3)])
def test_half_pixel_paths_equal_tf2_resize(size):
    x = _images((2, 7, 8, 3))
    native = tf.image.resize(x, size, method="bilinear", antialias=False).numpy()
    for ours in (np.asarray(resize_bilinear(x, size)),  # the default convention
                 np.asarray(_gather_resize(x, size)),
                 _dynamic(False)(x, tf.constant(size)).numpy()):
        np.testing.assert_allclose(ours, native, atol=1e-5)


def test_the_two_conventions_differ():
    x = _images((1, 5, 5, 3))
    half = np.asarray(resize_bilinear(x, (9, 9)))
    aligned = np.asarray(resize_bilinear(x, (9, 9), align_corners=True))
    assert np.abs(half - aligned).max() > 0.1
    np.testing.assert_array_equal(aligned[:, ::2, ::2], x)  # corners (and the grid) kept


def test_resize_works_with_unknown_sizes_in_a_traced_function():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2])])
    def up(x):
        shape = tf.shape(x)
        return resize_bilinear(x, (shape[1] * 2, shape[2] * 3))

    x = np.random.default_rng(1).normal(size=(1, 4, 5, 2)).astype("float32")
    expected = np.asarray(ops.image.resize(x, (8, 15), antialias=False))
    np.testing.assert_allclose(up(x).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_like_passes_layer_checks(align_corners):
    layer = check_layer(lambda: ResizeLike(align_corners),
                        [(2, 4, 5, 3), (2, 9, 11, 1)], (2, 9, 11, 3), check_grads=False)
    assert layer.get_config()["align_corners"] is align_corners


def test_resize_like_configs_without_the_option_keep_half_pixel_centres():
    config = json.loads(json.dumps(ResizeLike(True, name="up").get_config()))
    del config["align_corners"]  # a config saved before the option existed
    layer = ResizeLike.from_config(config)
    x, ref = _images((1, 4, 5, 3)), np.zeros((1, 9, 11, 1), "float32")
    np.testing.assert_allclose(np.asarray(layer([x, ref])),
                               tf.image.resize(x, (9, 11)).numpy(), atol=1e-5)
