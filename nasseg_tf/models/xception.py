"""The modified aligned Xception of DeepLabv3+ (Chen et al. 2018, §3.2), depth 65 or 71.

DPC's best Cityscapes model uses Xception-71 (SPEC §3.4). Structure as in the official
DeepLab release:

* entry flow: 3×3 conv 32 /2 → BN → ReLU, 3×3 conv 64 → BN → ReLU, then Xception
  blocks with a 1×1 conv + BN shortcut (strided like the block):
  Xception-65: depths 128 /2, 256 /2, 728 /2;
  Xception-71: 128 /2, 256 /1, 256 /2, 728 /1, 728 /2;
* middle flow: 16 blocks of depth 728, stride 1, identity shortcut;
* exit flow: block 1 of depths (728, 1024, 1024) /2 with a conv shortcut, block 2 of
  depths (1536, 1536, 2048), stride 1, no shortcut.

An Xception block is three 3×3 separable convs (:class:`XceptionSeparableConv`); the
last one carries the block's stride; the block output is their output plus the
shortcut. Each separable conv is ReLU → depthwise → BN → pointwise → BN, except in
exit block 2, where ReLU follows each BN instead ("activation_fn_in_separable_conv"), so
``features`` (2048 channels) is non-negative. Depth = 2 convs + 3 per block.

Output stride: DeepLab's atrous rule (:func:`~nasseg_tf.models.mobilenet_v2.
atrous_schedule`) over the units (two entry convs, then the blocks); a block turned to
stride 1 runs all three separable convs at the current rate, and the rate of later
blocks is multiplied by its nominal stride. Strided convs pad symmetrically like
DeepLab's ``conv2d_same`` (:func:`~nasseg_tf.layers.common.pad_for_stride`).

``low_level`` (the decoder input at output stride 4) is the output of the second
separable conv (pointwise, after its BN, no ReLU) of the entry block that takes the
stride from 4 to 8, DeepLab's decoder endpoint
``entry_flow/block{2 or 3}/unit_1/xception_module/separable_conv2_pointwise``: entry
block 2 of Xception-65 (256 channels), entry block 3 of Xception-71 (256 channels).
"""

import keras

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.models.mobilenet_v2 import atrous_schedule

# Entry-flow blocks (depth, stride) per network depth.
ENTRY_BLOCKS = {
    65: ((128, 2), (256, 2), (728, 2)),
    71: ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
}
MIDDLE_BLOCKS = 16
MIDDLE_DEPTH = 728
OUTPUT_STRIDES = (8, 16, 32)


def XceptionSeparableConv(filters, kernel_size=3, strides=1, dilation_rate=1,  # pylint: disable=invalid-name
                          activation_inside=False, bn_momentum=BN_MOMENTUM,
                          bn_epsilon=BN_EPSILON, name=None):
    """Xception's separable conv: ``depthwise k×k → BN → pointwise 1×1 → BN`` (a ConvBN).

    Args:
      filters: output channels.
      kernel_size: depthwise kernel size.
      strides: 1 or 2; strided convs pad symmetrically (DeepLab's ``conv2d_same``).
      dilation_rate: atrous rate of the depthwise step (int or (r_h, r_w)).
      activation_inside: False — one ReLU *before* the depthwise step and none after
        its BN (entry and middle flow, exit block 1); True — a ReLU after each of the
        two BNs and none before (exit block 2).
      bn_momentum, bn_epsilon: batch-norm settings.
    """
    return ConvBN(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
                  separable=True, depthwise_bn=True,
                  depthwise_activation=activation_inside,
                  pre_activation=not activation_inside,
                  post_activation=activation_inside, bn_momentum=bn_momentum,
                  bn_epsilon=bn_epsilon, name=name)


def xception_blocks(depth):
    """The blocks of Xception-``depth``: ``(name, depths, stride, shortcut, inside)``.

    ``shortcut`` is "conv", "sum" or "none"; ``inside`` is ``activation_inside`` of
    the block's separable convs.
    """
    if depth not in ENTRY_BLOCKS:
        raise ValueError(f"unknown Xception depth {depth}; known: "
                         f"{', '.join(str(d) for d in sorted(ENTRY_BLOCKS))}")
    blocks = [(f"entry_block{i + 1}", (d, d, d), s, "conv", False)
              for i, (d, s) in enumerate(ENTRY_BLOCKS[depth])]
    blocks += [(f"middle_block{i + 1}", (MIDDLE_DEPTH,) * 3, 1, "sum", False)
               for i in range(MIDDLE_BLOCKS)]
    blocks += [("exit_block1", (728, 1024, 1024), 2, "conv", False),
               ("exit_block2", (1536, 1536, 2048), 1, "none", True)]
    return blocks


def xception_backbone(images, depth=65, output_stride=16, bn_momentum=BN_MOMENTUM,
                      bn_epsilon=BN_EPSILON, name_prefix=""):
    """Applies the aligned Xception-65 or -71 to a (normalised) image tensor.

    Args:
      images: a Keras tensor ``[N, H, W, 3]`` in [-1, 1].
      depth: 65 or 71.
      output_stride: 8, 16 or 32 (32 = no atrous conv).
      bn_momentum, bn_epsilon: batch-norm settings.
      name_prefix: prepended to every layer name.

    Returns:
      ``dict(features=..., low_level=..., output_stride=...)``: ``features`` is the exit
      flow output (2048 channels, at ``output_stride``), ``low_level`` the decoder
      endpoint at output stride 4 (256 channels; see the module docstring).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, "
                         f"got {output_stride}")
    blocks = xception_blocks(depth)
    schedule = atrous_schedule([2, 1] + [b[2] for b in blocks], output_stride)
    p = name_prefix
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)

    x = ConvBN(32, 3, strides=schedule[0][0], name=f"{p}entry_conv1_1", **bn)(images)
    x = ConvBN(64, 3, name=f"{p}entry_conv1_2", **bn)(x)

    low_level = None
    nominal_stride = 2
    for (name, depths, nominal, shortcut, inside), (stride, rate) in zip(
            blocks, schedule[2:]):
        name = f"{p}{name}"
        y = x
        for i, filters in enumerate(depths):
            y = XceptionSeparableConv(
                filters, 3, strides=stride if i == 2 else 1, dilation_rate=rate,
                activation_inside=inside, name=f"{name}_sep{i + 1}", **bn)(y)
            if i == 1 and nominal_stride == 4 and nominal == 2:
                low_level = y
        if shortcut == "conv":
            x = ConvBN(depths[-1], 1, strides=stride, post_activation=False,
                       name=f"{name}_shortcut", **bn)(x)
        if shortcut != "none":
            y = keras.layers.Add(name=f"{name}_add")([x, y])
        x = y
        nominal_stride *= nominal
    return {"features": x, "low_level": low_level, "output_stride": int(output_stride)}


__all__ = ["xception_backbone", "xception_blocks", "XceptionSeparableConv",
           "ENTRY_BLOCKS"]
