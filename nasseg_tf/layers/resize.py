"""Bilinear resizing in both conventions, with static and dynamic (served) sizes.

Two conventions exist and trained weights depend on which one a model was trained with:

* **half-pixel centres** (``align_corners=False``, our layers' default): output pixel
  ``i`` samples the input at ``(i + 0.5) · in / out − 0.5`` — the semantics of TF2's
  ``tf.image.resize`` and ``jax.image.resize`` (no antialiasing);
* **aligned corners** (``align_corners=True``): output pixel ``i`` samples the input at
  ``i · (in − 1) / (out − 1)`` (0 when ``out == 1``), so the corner pixels of input
  and output coincide — TF1's ``tf.compat.v1.image.resize_bilinear(...,
  align_corners=True)``, which the official TF1 DeepLab graph uses for every resize
  (features, image pooling, decoder, logits; SPEC §7 "Numerics of the official graph").
  With DeepLab's crop sizes ``k·OS + 1`` the feature pixel ``i`` then sits exactly on
  the image pixel ``OS·i``.

``keras.ops.image.resize`` needs Python-int sizes (inside a traced function whose input
has unknown height/width, e.g. a SavedModel signature ``[None, None, None, 3]``, it
fails) and only knows half-pixel centres. :func:`resize_bilinear` therefore uses it for
half-pixel centres with static sizes; aligned corners with static sizes are computed per
axis without gathers where the sizes are DeepLab's (``(out − 1)`` a multiple of
``(in − 1)`` or the reverse) and by gathering otherwise; dynamic sizes always gather
(two ``take`` and a lerp per axis). Everything is ``keras.ops``, so it runs on every
Keras backend. The tests check each path against TensorFlow's own kernels.

Which convention a model uses is a parameter of every layer that resizes
(``align_corners``, default False so that layer configs saved before the parameter
existed keep their numerics); the zoo passes True for the models that mirror the
official graph (see :mod:`nasseg_tf.models.zoo`).
"""

import keras
from keras import ops


def _is_static(size):
    return all(isinstance(s, int) for s in size)


def _axis_weights(in_size, out_size, dtype, align_corners):
    """Source indices ``(low, high)`` and weights ``frac`` of ``high`` for one axis.

    With ``align_corners`` the arithmetic is TF1's (float32 ``scale = (in − 1) /
    (out − 1)``, source ``i · scale``), so the weights equal the native kernel's.
    """
    in_f = ops.cast(in_size, "float32")
    out_f = ops.cast(out_size, "float32")
    index = ops.cast(ops.arange(out_size), "float32")
    if align_corners:
        pos = index * ((in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0))
    else:
        pos = (index + 0.5) * (in_f / out_f) - 0.5
    pos = ops.clip(pos, 0.0, in_f - 1.0)
    low = ops.floor(pos)
    frac = ops.cast(pos - low, dtype)
    low_i = ops.cast(low, "int32")
    high_i = ops.minimum(low_i + 1, ops.cast(in_size, "int32") - 1)
    return low_i, high_i, frac


def _reshape_axis(vector, axis):
    """``vector`` shaped to broadcast along ``axis`` of an NHWC tensor."""
    return ops.reshape(vector, (1,) * axis + (-1,) + (1,) * (3 - axis))


def _along(axis, start=None, stop=None, step=None):
    """An index that slices ``start:stop:step`` along ``axis`` only."""
    return (slice(None),) * axis + (slice(start, stop, step),)


def _lerp_axis(x, axis, out_size, align_corners):
    """Bilinear interpolation along one axis by gathering (any sizes, any backend)."""
    low, high, frac = _axis_weights(ops.shape(x)[axis], out_size, x.dtype, align_corners)
    a = ops.take(x, low, axis=axis)
    b = ops.take(x, high, axis=axis)
    return a + (b - a) * _reshape_axis(frac, axis)


def _aligned_axis(x, axis, out_size):
    """Aligned-corner interpolation along ``axis`` for static sizes.

    Where ``out − 1`` is a multiple of ``in − 1`` (upsampling a ``k·OS + 1`` feature
    map to its ``k·OS' + 1`` crop, Auto-DeepLab's ×2 up-steps) every output pixel lies
    at a fixed fraction ``r / s`` between two neighbours, and where ``in − 1`` is a
    multiple of ``out − 1`` (the official stride-2 resize of an odd size) it falls on
    an input pixel: both are computed without gathers (measured on CPU, 65×129 → 1025×2049
    logits: 1.2× faster than gathering, 1.3× in the gradient; TF1's native kernel is
    still about 1.8× faster). Other sizes gather. The values are the native kernel's.
    """
    in_size = ops.shape(x)[axis]
    if out_size == in_size:
        return x
    if out_size == 1:
        return x[_along(axis, 0, 1)]
    if in_size == 1:
        return ops.repeat(x, out_size, axis=axis)
    if (in_size - 1) % (out_size - 1) == 0:
        return x[_along(axis, None, None, (in_size - 1) // (out_size - 1))]
    if (out_size - 1) % (in_size - 1) == 0:
        steps = (out_size - 1) // (in_size - 1)
        low = ops.expand_dims(x[_along(axis, 0, in_size - 1)], axis + 1)
        high = ops.expand_dims(x[_along(axis, 1, None)], axis + 1)
        frac = ops.cast(ops.arange(steps), x.dtype) / float(steps)
        frac = ops.reshape(frac, (1,) * (axis + 1) + (-1,) + (1,) * (3 - axis))
        shape = list(ops.shape(x))
        shape[axis] = (in_size - 1) * steps
        y = ops.reshape(low + (high - low) * frac, [-1] + shape[1:])
        return ops.concatenate([y, x[_along(axis, in_size - 1, None)]], axis=axis)
    return _lerp_axis(x, axis, out_size, True)


def _gather_resize(images, size, align_corners=False):
    """Bilinear interpolation by gathering columns, then rows (TF's kernel's order)."""
    x = _lerp_axis(images, 2, size[1], align_corners)
    return _lerp_axis(x, 1, size[0], align_corners)


def resize_bilinear(images, size, align_corners=False):
    """Resizes NHWC ``images`` to ``size = (height, width)`` bilinearly.

    Args:
      images: a 4-D tensor ``[N, H, W, C]``.
      size: a pair of Python ints or scalar integer tensors.
      align_corners: False — half-pixel centres (TF2 ``tf.image.resize``); True —
        aligned corners (TF1 ``resize_bilinear(align_corners=True)``, the official
        DeepLab graph). See the module docstring.

    Returns:
      ``[N, size[0], size[1], C]`` in the input's dtype.
    """
    size = tuple(size)
    in_shape = ops.shape(images)
    if not (_is_static(size) and _is_static(in_shape[1:3])):
        return _gather_resize(images, size, align_corners)
    if tuple(in_shape[1:3]) == size:
        return images  # the identity in both conventions
    if align_corners:
        return _aligned_axis(_aligned_axis(images, 2, size[1]), 1, size[0])
    out = ops.image.resize(images, size, interpolation="bilinear", antialias=False)
    return ops.cast(out, images.dtype)


def spatial_size(x):
    """``(H, W)`` of an NHWC tensor: Python ints where static, tensors otherwise."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def downsampled_size(size, factor=2):
    """Spatial size after a stride-``factor`` 'same' convolution: ceil(size / factor)."""
    return tuple((s + factor - 1) // factor for s in size)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ResizeLike(keras.layers.Layer):
    """Resizes ``inputs[0]`` bilinearly to the spatial size of ``inputs[1]``.

    Args:
      align_corners: the resizing convention (see :func:`resize_bilinear`); False in
        configs saved before the option existed.
    """

    def __init__(self, align_corners=False, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        x, reference = inputs
        return resize_bilinear(x, spatial_size(reference), self.align_corners)

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(align_corners=self.align_corners)
        return config
