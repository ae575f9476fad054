"""Losses for the training loop (TensorFlow: used inside ``strategy.run``)."""

import tensorflow as tf


def masked_cross_entropy(labels, logits, ignore_label=255):
    """Mean softmax cross-entropy over pixels whose label is not ``ignore_label``.

    Args:
      labels: int ``[N, H, W]``.
      logits: float ``[N, H, W, C]`` (computed in float32 whatever the policy).
    Returns:
      a scalar: the mean over valid pixels (0 when no pixel is valid).
    """
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    valid = tf.not_equal(labels, ignore_label)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                               logits=logits)
    weights = tf.cast(valid, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), tf.reduce_sum(weights))


def l2_regularization(variables, weight_decay):
    """DeepLab-style weight decay: ``weight_decay · Σ ||w||² / 2`` over conv/dense kernels.

    Biases and batch-norm parameters are not decayed (as in the official release, which
    regularises only the weights of convolutions).
    """
    kernels = [v for v in variables if _is_kernel(v)]
    if not kernels or not weight_decay:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in kernels])


def _is_kernel(variable):
    name = variable.path if hasattr(variable, "path") else variable.name
    return name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel",
                                                  "pointwise_kernel")
