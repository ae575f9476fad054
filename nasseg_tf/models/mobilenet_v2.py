"""MobileNet-v2 (Sandler et al. 2018) as a DeepLab backbone with atrous output stride.

The DPC paper (Chen et al. 2018, §4.1) runs its proxy search on MobileNet-v2 features
at output stride 16 (SPEC §3.3). Layout, Table 2 of Sandler et al.:

* stem: 3×3 conv 32, stride 2 → BN → ReLU6;
* 17 inverted-residual blocks, groups (expansion t, channels c, repeats n, stride s) =
  (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1).
  A block is: 1×1 expand to ``t·C_in`` → BN → ReLU6 (no expand when t = 1),
  3×3 depthwise (stride / atrous rate) → BN → ReLU6, 1×1 project → BN (linear), plus the
  input when the block keeps stride 1 and its channel count.

The final 1×1 conv to 1280 channels of the classifier is left out, as in DeepLab:
``features`` is the 320-channel output of the last block. No conv has a bias (a BN
follows each one).

Output stride (DeepLab's rule, Chen et al. 2017 §3.1, see :func:`atrous_schedule`): once
the accumulated stride reaches ``output_stride``, later strides become 1 and multiply
the dilation rate of the blocks after them instead.

Padding of the strided convs (the stem and four depthwise convs), a parameter:

* ``explicit_padding=True`` (the default, what this function always did): pad
  explicitly and symmetrically, ``(k_eff - 1) // 2`` before and the rest after, like
  DeepLab's ``conv2d_same`` (:func:`nasseg_tf.layers.common.pad_for_stride`), our
  Xception and slim's ``use_explicit_padding=True``; then a VALID conv.
* ``explicit_padding=False``: TensorFlow's 'SAME' padding, which on an even size puts
  the extra pixel at the bottom/right — what the slim MobileNet-v2 in the official
  DeepLab graph does (``mobilenet_base`` with ``use_explicit_padding=False``; SPEC §7).
  The zoo's official numerics use it.

On odd sizes (DeepLab's crops ``OS·k + 1`` keep every intermediate size odd) the two
agree. Output sizes (``ceil(n / stride)`` per step), layer names of the weights and
parameter counts are the same either way (the padding layers have no weights).

Depth multiplier: every channel count (stem and block outputs) is multiplied and rounded
to a multiple of 8 by :func:`make_divisible` (the rule of the reference implementation);
the expansion width is ``t ×`` the (already rounded) input channels.
"""

import keras

from nasseg_tf.layers.common import (BN_EPSILON, BN_MOMENTUM, KERNEL_INITIALIZER,
                                     batch_norm)

# (expansion t, output channels c, repeats n, first stride s): Sandler et al. Table 2.
INVERTED_RESIDUAL_GROUPS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32
OUTPUT_STRIDES = (8, 16, 32)


def make_divisible(value, divisor=8, min_value=None):
    """Rounds ``value`` to the nearest multiple of ``divisor``, losing at most 10%.

    The channel rounding of MobileNet-v2 (Sandler et al. 2018) under a depth multiplier.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def atrous_schedule(strides, output_stride):
    """(stride, dilation rate) per unit so that the network ends at ``output_stride``.

    DeepLab's rule (Chen et al. 2017, DeepLabv3 §3.1): units keep their stride until the
    accumulated stride equals ``output_stride``; from then on each unit runs at stride 1
    with the current rate, and its nominal stride multiplies the rate of the units after
    it.

    Args:
      strides: nominal stride of every unit, in order.
      output_stride: the wanted ratio of input to output size.

    Returns:
      a list of ``(stride, rate)`` pairs, one per unit.
    """
    current, rate, schedule = 1, 1, []
    for stride in strides:
        if current == output_stride:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, 1))
            current *= stride
            if current > output_stride:
                raise ValueError(f"output_stride={output_stride} is not reachable with "
                                 f"strides {tuple(strides)}")
    if current != output_stride:
        raise ValueError(f"output_stride={output_stride} is larger than the network's "
                         f"natural stride {current}")
    return schedule


def _check_output_stride(output_stride):
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, "
                         f"got {output_stride}")
    return int(output_stride)


def mobilenet_v2_backbone(images, output_stride=16, depth_multiplier=1.0,
                          bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, name_prefix="",
                          explicit_padding=True):
    """Applies MobileNet-v2 to a (normalised) image tensor.

    Args:
      images: a Keras tensor ``[N, H, W, 3]`` in [-1, 1].
      output_stride: 8, 16 or 32 (32 = no atrous conv).
      depth_multiplier: width multiplier α of all layers (channels rounded to
        multiples of 8).
      bn_momentum, bn_epsilon: batch-norm settings (official DeepLab: 0.997, 1e-3).
      name_prefix: prepended to every layer name (two backbones in one model).
      explicit_padding: symmetric explicit padding of the strided convs (True) or
        TensorFlow 'SAME' padding as in the official DeepLab graph (False); see the
        module docstring.

    Returns:
      ``dict(features=..., low_level=..., output_stride=...)``: ``features`` is the
      output of the last inverted-residual block (320·α channels, at ``output_stride``);
      ``low_level`` is the output of the last 24·α-channel block, at output stride 4.
      (DeepLab's decoder for MobileNet-v2 reads ``layer_4/depthwise_output``, the
      144-channel depthwise activation inside that same block; we return the block
      output, which the decoder's 1×1 reduction maps to the same 48 channels.)
    """
    output_stride = _check_output_stride(output_stride)
    p = name_prefix
    bn = dict(momentum=bn_momentum, epsilon=bn_epsilon)
    conv = dict(use_bias=False, kernel_initializer=KERNEL_INITIALIZER)

    blocks = []  # (expansion, filters, stride) per block
    for t, c, n, s in INVERTED_RESIDUAL_GROUPS:
        filters = make_divisible(c * depth_multiplier)
        blocks.extend((t, filters, s if i == 0 else 1) for i in range(n))
    (stem_stride, _), *schedule = atrous_schedule(
        [2] + [s for _, _, s in blocks], output_stride)

    def pad(x, stride, name):
        """``(x, the 3×3 conv's padding mode)``: explicit symmetric padding before a
        strided conv, else 'same' (TF 'SAME': at stride 2 the extra pixel at the end)."""
        if stride > 1 and explicit_padding:
            return keras.layers.ZeroPadding2D(1, name=name)(x), "valid"
        return x, "same"

    stem_filters = make_divisible(STEM_FILTERS * depth_multiplier)
    x, padding = pad(images, stem_stride, f"{p}stem_pad")
    x = keras.layers.Conv2D(stem_filters, 3, strides=stem_stride, padding=padding,
                            name=f"{p}stem_conv", **conv)(x)
    x = batch_norm(f"{p}stem_bn", **bn)(x)
    x = keras.layers.ReLU(6.0, name=f"{p}stem_relu")(x)

    low_level = None
    in_channels = stem_filters
    nominal_stride = 2  # the stride without atrous conversion (equal up to 8)
    for i, ((t, filters, s), (stride, rate)) in enumerate(zip(blocks, schedule)):
        name = f"{p}block{i}"
        inputs = x
        if t != 1:
            x = keras.layers.Conv2D(in_channels * t, 1, name=f"{name}_expand", **conv)(x)
            x = batch_norm(f"{name}_expand_bn", **bn)(x)
            x = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
        x, padding = pad(x, stride, f"{name}_pad")
        x = keras.layers.DepthwiseConv2D(
            3, strides=stride, dilation_rate=rate, padding=padding, use_bias=False,
            depthwise_initializer=KERNEL_INITIALIZER, name=f"{name}_depthwise")(x)
        x = batch_norm(f"{name}_depthwise_bn", **bn)(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
        x = keras.layers.Conv2D(filters, 1, name=f"{name}_project", **conv)(x)
        x = batch_norm(f"{name}_project_bn", **bn)(x)
        if stride == 1 and in_channels == filters:
            x = keras.layers.Add(name=f"{name}_add")([inputs, x])
        nominal_stride *= s
        if nominal_stride == 4:  # the last such block wins: 24·α channels
            low_level = x
        in_channels = filters
    return {"features": x, "low_level": low_level, "output_stride": output_stride}


__all__ = ["mobilenet_v2_backbone", "make_divisible", "atrous_schedule",
           "INVERTED_RESIDUAL_GROUPS"]
