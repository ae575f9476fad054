"""Bilinear resizing that works with static and dynamic (served) spatial sizes.

``keras.ops.image.resize`` needs Python-int sizes: inside a traced function whose
input has unknown height/width (a SavedModel signature ``[None, None, None, 3]``) it
fails. :func:`resize_bilinear` uses it when the target size is static and otherwise
falls back to a gather-based bilinear interpolation written in ``keras.ops``. Both
paths use half-pixel centres without antialiasing (``tf.image.resize`` /
``jax.image.resize`` semantics), so they agree to float precision; the tests check it.

Choice (the papers are silent for TF2): the official TF1 DeepLab code resized with
``align_corners=True``; we use half-pixel centres, the TF2/JAX default.
"""

import keras
from keras import ops


def _is_static(size):
    return all(isinstance(s, int) for s in size)


def _axis_weights(in_size, out_size, dtype):
    """Source indices and interpolation weights for one axis (half-pixel centres)."""
    in_f = ops.cast(in_size, "float32")
    out_f = ops.cast(out_size, "float32")
    pos = (ops.cast(ops.arange(out_size), "float32") + 0.5) * (in_f / out_f) - 0.5
    pos = ops.clip(pos, 0.0, in_f - 1.0)
    low = ops.floor(pos)
    frac = ops.cast(pos - low, dtype)
    low_i = ops.cast(low, "int32")
    high_i = ops.minimum(low_i + 1, ops.cast(in_size, "int32") - 1)
    return low_i, high_i, frac


def _gather_resize(images, size):
    dtype = images.dtype
    shape = ops.shape(images)
    y0, y1, fy = _axis_weights(shape[1], size[0], dtype)
    x0, x1, fx = _axis_weights(shape[2], size[1], dtype)
    top = ops.take(images, y0, axis=1)
    bottom = ops.take(images, y1, axis=1)
    fy = ops.reshape(fy, (1, -1, 1, 1))
    rows = top + (bottom - top) * fy
    left = ops.take(rows, x0, axis=2)
    right = ops.take(rows, x1, axis=2)
    fx = ops.reshape(fx, (1, 1, -1, 1))
    return left + (right - left) * fx


def resize_bilinear(images, size):
    """Resizes NHWC ``images`` to ``size = (height, width)`` bilinearly.

    Args:
      images: a 4-D tensor ``[N, H, W, C]``.
      size: a pair of Python ints or scalar integer tensors.

    Returns:
      ``[N, size[0], size[1], C]`` in the input's dtype.
    """
    size = tuple(size)
    in_shape = ops.shape(images)
    if _is_static(size) and _is_static(in_shape[1:3]):
        if tuple(in_shape[1:3]) == size:
            return images
        out = ops.image.resize(
            images, size, interpolation="bilinear", antialias=False
        )
        return ops.cast(out, images.dtype)
    return _gather_resize(images, size)


def spatial_size(x):
    """``(H, W)`` of an NHWC tensor: Python ints where static, tensors otherwise."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def downsampled_size(size, factor=2):
    """Spatial size after a stride-``factor`` 'same' convolution: ceil(size / factor)."""
    return tuple((s + factor - 1) // factor for s in size)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ResizeLike(keras.layers.Layer):
    """Resizes ``inputs[0]`` bilinearly to the spatial size of ``inputs[1]``."""

    def call(self, inputs):
        x, reference = inputs
        return resize_bilinear(x, spatial_size(reference))

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])
