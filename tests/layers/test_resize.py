"""Bilinear resize: the dynamic (gather) path equals keras.ops.image.resize."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from layer_checks import check_layer
from nasseg_tf.layers.resize import ResizeLike, _gather_resize, resize_bilinear


@pytest.mark.parametrize("size", [(13, 17), (5, 4), (26, 9), (7, 8)])
def test_gather_path_matches_native_resize(size):
    x = np.random.default_rng(0).normal(size=(2, 7, 8, 3)).astype("float32")
    native = np.asarray(ops.image.resize(x, size, interpolation="bilinear", antialias=False))
    ours = np.asarray(_gather_resize(x, size))
    np.testing.assert_allclose(ours, native, atol=1e-5)


def test_resize_works_with_unknown_sizes_in_a_traced_function():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2])])
    def up(x):
        shape = tf.shape(x)
        return resize_bilinear(x, (shape[1] * 2, shape[2] * 3))

    x = np.random.default_rng(1).normal(size=(1, 4, 5, 2)).astype("float32")
    expected = np.asarray(ops.image.resize(x, (8, 15), antialias=False))
    np.testing.assert_allclose(up(x).numpy(), expected, atol=1e-5)


def test_resize_like_passes_layer_checks():
    check_layer(ResizeLike, [(2, 4, 5, 3), (2, 9, 11, 1)], (2, 9, 11, 3),
                check_grads=False)
