"""Loss functions: masked cross-entropy and DeepLab-style L2 weight decay."""

import numpy as np
import tensorflow as tf

from nasseg_tf.layers.common import ConvBN
from nasseg_tf.train.losses import l2_regularization, masked_cross_entropy


def test_masked_cross_entropy_ignores_the_ignore_label():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    labels = rng.integers(0, 5, (2, 3, 4))
    labels[0, 0, :] = 255
    valid = labels != 255
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    expected = -(picked * valid).sum() / valid.sum()
    got = float(masked_cross_entropy(tf.constant(labels), tf.constant(logits)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_all_ignored_gives_zero_loss():
    labels = tf.fill((1, 2, 2), 255)
    assert float(masked_cross_entropy(labels, tf.zeros((1, 2, 2, 3)))) == 0.0


def test_l2_decays_conv_kernels_only():
    layer = ConvBN(4, 3, separable=True)
    layer(np.zeros((1, 5, 5, 2), "float32"))
    kernels = [v for v in layer.trainable_variables if "kernel" in v.path]
    assert len(kernels) == 2 and len(layer.trainable_variables) == 4  # + BN gamma, beta
    expected = 1e-3 * sum(float(np.sum(np.square(k.numpy()))) / 2 for k in kernels)
    got = float(l2_regularization(layer.trainable_variables, 1e-3))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(l2_regularization(layer.trainable_variables, 0.0)) == 0.0
