"""The derived Auto-DeepLab network (Liu et al. 2019, §4.1 and SPEC §2.5).

Backbone: stem (3×3 conv 64 /2 → BN → ReLU → 3×3 conv 64 → BN → ReLU → 3×3 conv 128 /2
→ BN) and one :class:`DerivedCell` per entry of the path. Cell l works at downsample
``4·2^path[l]`` with ``F·2^path[l]`` filters per block (filter scaling ×2 per down-step,
÷2 per up-step) and outputs ``5·F·2^path[l]`` channels.

* Down-step (level + 1): the cell's ops on its inputs use stride 2.
* Up-step (level − 1): H^{l-1} is first resized bilinearly to the size the finer level
  had earlier in the network (official: ×2 ``scale_dimension``; we reuse the exact size
  so odd input sizes line up with the decoder's low-level feature).
* H^{l-2} is resized to H^{l-1}'s (possibly upsampled) size when their levels differ.
* As in the official release, cell 0's H^{l-2} is the stem's second conv output
  (64 channels at downsample 2) and cell 1's is the stem output.

Endpoints: ``low_level`` = Cell_2's output (downsample 4 on the published path),
``features`` = ReLU of the last cell's output.

Numerics (``align_corners``): the official ``nas_network.py`` / ``nas_cell.py`` resize
with aligned corners (DeepLab's ``resize_bilinear``) in the up-steps and for H^{l-2};
False (half-pixel centres) is what configs saved before the option mean. On DeepLab's
crops (``k·32 + 1``) the official up-step size ``2n − 1`` equals the finer level's
earlier size that we use, and hnasnet's 'SAME' padding of strided convs equals our
symmetric padding; on other sizes both differ. The stride-2 ``atrous`` op resizes
inside :mod:`nasseg_tf.layers.ops`, with half-pixel centres.
"""

import keras

from nasseg_tf.layers.cell import DerivedCell
from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.resize import ResizeLike
from nasseg_tf.search_space.genotypes import load_genotype


def autodeeplab_backbone(images, genotype, filter_multiplier=20, low_level_cell=2,
                         bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                         drop_path_keep_prob=1.0, align_corners=False):
    """Applies the Auto-DeepLab backbone to a (normalised) image tensor.

    Args:
      images: a Keras tensor ``[N, H, W, 3]`` in [-1, 1].
      genotype: a NetworkGenotype, its config, a published name or a JSON path.
      filter_multiplier: F (20 / 32 / 48 for Auto-DeepLab-S / M / L).
      low_level_cell: index of the cell whose output feeds the decoder.
      drop_path_keep_prob: scheduled drop path in the cells (1.0: off; see
        :class:`~nasseg_tf.layers.cell.DerivedCell`).
      align_corners: resizing convention of the up-steps and of the cells' H^{l-2}
        (see the module docstring).

    Returns:
      ``dict(low_level=..., features=..., cells=[...])`` of Keras tensors.
    """
    genotype = load_genotype(genotype)
    if not 0 <= low_level_cell < len(genotype.path):
        raise ValueError(f"low_level_cell={low_level_cell} but the path has "
                         f"{len(genotype.path)} cells")
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
    x = ConvBN(64, 3, strides=2, name="stem_conv0", **bn)(images)
    stem1 = ConvBN(64, 3, post_activation=False, name="stem_conv1", **bn)(x)
    x = keras.layers.ReLU(name="stem_relu1")(stem1)
    stem2 = ConvBN(128, 3, strides=2, post_activation=False, name="stem_conv2", **bn)(x)

    # The latest tensor seen at each level: sizes for up-steps. Level -1 = downsample 2.
    at_level = {-1: stem1, 0: stem2}
    outputs = [(stem1, -1), (stem2, 0)]  # (tensor, level): H^{l-2}, H^{l-1} candidates
    cells = []
    prev_level = 0
    for l, level in enumerate(genotype.path):
        h_prev, _ = outputs[-1]
        h_prev_prev, pp_level = outputs[-2]
        stride = 2 if level == prev_level + 1 else 1
        if level == prev_level - 1:
            h_prev = ResizeLike(align_corners, name=f"cell_{l}_upsample")(
                [h_prev, at_level[level]])
        input_level = level if stride == 1 else prev_level
        cell = DerivedCell(
            genotype.cell, filter_multiplier * 2 ** level, stride=stride,
            resample_prev_prev=pp_level != input_level,
            drop_path_keep_prob=drop_path_keep_prob,
            layer_ratio=(l + 1) / len(genotype.path), align_corners=align_corners,
            name=f"cell_{l}", **bn)
        out = cell([h_prev, h_prev_prev])
        cells.append(out)
        outputs.append((out, level))
        at_level[level] = out
        prev_level = level
    features = keras.layers.ReLU(name="backbone_relu")(cells[-1])
    return {"low_level": cells[low_level_cell], "features": features, "cells": cells,
            "output_stride": genotype.output_stride}
