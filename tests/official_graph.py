"""The official TF1 DeepLab graphs, rebuilt from the facts of SPEC §7 alone: a test reference.

Independent of nasseg_tf's model code on purpose (nothing here imports ``nasseg_tf``): an
importer test compares our Keras models with THIS reference, so a shared mistake cannot hide.

Three pieces:

1. **Variable tables** ``{official variable name: Shape}``. ``Shape`` is a tuple (so a table
   compares equal to ``{name: tuple(shape)}``) that also carries ``kind`` (what the tensor is:
   ``kernel`` [kh,kw,in,out], ``depthwise`` [kh,kw,in,1], ``bias`` [C], a batch-norm
   parameter, ``global_step``), ``slot`` (None, ``"ExponentialMovingAverage"`` or
   ``"Momentum"``) and ``gain`` (a scale hint for :func:`random_weights`: He or LeCun for a
   kernel, a smaller gamma at the end of a residual branch). Tables list variables in graph
   order; :func:`shape_map` turns one into the format of ``get_variable_to_shape_map()``.
   - :func:`deeplab_table` — whole DeepLab models (:data:`MODELS`);
   - :func:`xception_imagenet_table`, :func:`mobilenet_v2_imagenet_table`,
     :func:`imagenet_table` — ImageNet backbone checkpoints;
   - :func:`hnasnet_table` — Auto-DeepLab ``nas_hnasnet`` checkpoints;
   - :func:`with_training_extras` — EMA shadows, ``Momentum`` slots, ``global_step``.
2. **A TF1-style checkpoint writer**: :func:`write_checkpoint` (``tf.raw_ops.SaveV2``, any
   names) and :func:`random_weights` (sensibly scaled values for a table).
3. **The official forward pass in raw ``tf.nn`` ops**: :func:`official_logits` for the six
   DeepLab models of :data:`MODELS` (SPEC asks for ``xception71_dpc`` and
   ``mobilenetv2_deeplabv3``; the others reuse the same block functions). There is no forward
   pass for hnasnet (tables only).

The table builders and the forward pass build every name with the same helpers (the
``*_scope`` functions and block lists below), and the forward pass can record the names it
reads (``used=set()``), so a test checks that it reads exactly its table.

Choices where SPEC is ambiguous are written next to the code as ``AMBIGUITY:`` comments that
quote the spec line they interpret.
"""

from __future__ import annotations

import os
import zlib
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

# ---------------------------------------------------------------------------------------------
# Shapes and kinds
# ---------------------------------------------------------------------------------------------

KERNEL = "kernel"  # [kh, kw, in, out]: slim ``weights``, a fused separable's ``pointwise_weights``
DEPTHWISE = "depthwise"  # [kh, kw, in, 1]: ``depthwise_weights``
BIAS = "bias"  # [C]: ``biases`` (only where no batch norm follows: the logits)
GAMMA, BETA = "gamma", "beta"
MOVING_MEAN, MOVING_VARIANCE = "moving_mean", "moving_variance"
GLOBAL_STEP = "global_step"  # int64 scalar

TRAINABLE_KINDS = frozenset({KERNEL, DEPTHWISE, BIAS, GAMMA, BETA})
EMA_SLOT, MOMENTUM_SLOT = "ExponentialMovingAverage", "Momentum"

# Batch-norm parameters in the order slim creates them.
BN_PARAMS = (BETA, GAMMA, MOVING_MEAN, MOVING_VARIANCE)

# SPEC §7: "Batch norm epsilon 1e-3 in the backbones, 1e-5 in ASPP, DPC and the decoder".
BACKBONE_BN_EPS = 1e-3
HEAD_BN_EPS = 1e-5

SEPARABLE_DEPTH = 256  # ASPP, DPC, decoder and concat-projection filters
DECODER_PROJECTION_DEPTH = 48


# Gains that :func:`random_weights` applies (see there). A kernel whose input comes straight
# from a ReLU/ReLU6 gets the He variance 2/fan_in (gain 1); any other kernel 1/fan_in (gain 1/2).
RECTIFIED_GAIN, LINEAR_GAIN = 1.0, 0.5
# gamma scale of the LAST batch norm of a residual branch (Xception units with a skip,
# MobileNet-v2 units with a residual): keeps x + f(x) from doubling per unit, since fixed
# moving statistics do not renormalise (16 middle-flow units would otherwise give ~2^8 × std).
RESIDUAL_GAMMA_GAIN = 0.25
# gamma scale of the last batch norm of each hnasnet op: a block sums two ops.
HNASNET_OP_GAMMA_GAIN = 0.5 ** 0.5


class Shape(tuple):
    """A variable's shape (a plain tuple for comparisons) with ``kind``, ``slot`` and ``gain``
    (a hint for :func:`random_weights`; 1.0 = the default scale of the kind)."""

    def __new__(cls, dims, kind: str, slot: str | None = None, gain: float = 1.0):
        self = super().__new__(cls, (int(d) for d in dims))
        self.kind = kind
        self.slot = slot
        self.gain = float(gain)
        return self

    def __repr__(self):
        slot = f", slot={self.slot!r}" if self.slot else ""
        gain = f", gain={self.gain:g}" if self.gain != 1.0 else ""
        return f"Shape({tuple(self)!r}, {self.kind!r}{slot}{gain})"

    def __reduce__(self):
        return (Shape, (tuple(self), self.kind, self.slot, self.gain))


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    a, b = value
    return int(a), int(b)


# ---------------------------------------------------------------------------------------------
# Name helpers (shared by the tables and the forward pass)
# ---------------------------------------------------------------------------------------------

def weights_name(scope: str) -> str:
    """``S/weights``: a slim conv's kernel [kh, kw, in, out]."""
    return f"{scope}/weights"


def biases_name(scope: str) -> str:
    return f"{scope}/biases"


def depthwise_name(scope: str) -> str:
    """``S/depthwise_weights``: a depthwise kernel [kh, kw, in, 1]."""
    return f"{scope}/depthwise_weights"


def pointwise_name(scope: str) -> str:
    """``S/pointwise_weights``: the 1×1 half of a FUSED slim separable conv (hnasnet)."""
    return f"{scope}/pointwise_weights"


def bn_scope(scope: str) -> str:
    """The batch norm that slim attaches to conv ``S`` (``normalizer_fn``): ``S/BatchNorm``."""
    return f"{scope}/BatchNorm"


def bn_names(bn: str) -> dict[str, str]:
    """``{param: name}`` of the batch-norm quadruple stored under scope ``bn``."""
    return {p: f"{bn}/{p}" for p in BN_PARAMS}


def separable_scopes(scope: str) -> tuple[str, str]:
    """DeepLab's split separable conv ``S``: ``(S_depthwise, S_pointwise)`` (SPEC §7)."""
    return f"{scope}_depthwise", f"{scope}_pointwise"


# --- Xception ---------------------------------------------------------------------------------

class XceptionBlock(NamedTuple):
    flow: str  # entry_flow | middle_flow | exit_flow
    block: int  # the N of ``block<N>``
    units: int
    depths: tuple[int, int, int]  # output channels of separable_conv1..3
    skip: str  # "conv" (1×1 shortcut + BN), "sum" (identity) or "none"
    stride: int  # on separable_conv3 and the shortcut
    relu_inside: bool  # ReLU after each BN inside the separable conv instead of before it


_XCEPTION_ENTRY = {
    # SPEC §7 "Xception-65 blocks": entry block1-3: 128/256/728, stride 2, conv skip.
    "xception_65": ((128, 2), (256, 2), (728, 2)),
    # SPEC §7 "Xception-71 blocks": block1 128 s2, block2 256 s1, block3 256 s2, block4 728 s1,
    # block5 728 s2 (conv skips).
    "xception_71": ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)),
}
XCEPTION_VARIANTS = tuple(_XCEPTION_ENTRY)
XCEPTION_STEM_DEPTHS = (32, 64)  # conv1_1 (3×3, stride 2), conv1_2 (3×3)
XCEPTION_MIDDLE_UNITS = 16

# SPEC §7 "decoder low-level feature": x65 entry_flow/block2, x71 entry_flow/block3,
# unit_1, separable_conv2_pointwise (256 ch, OS 4).
_XCEPTION_LOW_LEVEL_BLOCK = {"xception_65": 2, "xception_71": 3}


def xception_blocks(variant: str) -> list[XceptionBlock]:
    """The block list of ``xception_65`` / ``xception_71`` (SPEC §7 table)."""
    if variant not in _XCEPTION_ENTRY:
        raise ValueError(f"unknown Xception variant {variant!r}; expected one of {XCEPTION_VARIANTS}")
    blocks = [XceptionBlock("entry_flow", b, 1, (d, d, d), "conv", s, False)
              for b, (d, s) in enumerate(_XCEPTION_ENTRY[variant], 1)]
    blocks.append(XceptionBlock("middle_flow", 1, XCEPTION_MIDDLE_UNITS, (728, 728, 728), "sum", 1, False))
    blocks.append(XceptionBlock("exit_flow", 1, 1, (728, 1024, 1024), "conv", 2, False))
    blocks.append(XceptionBlock("exit_flow", 2, 1, (1536, 1536, 2048), "none", 1, True))
    return blocks


def xception_stem_scopes(variant: str) -> tuple[str, str]:
    return f"{variant}/entry_flow/conv1_1", f"{variant}/entry_flow/conv1_2"


def xception_unit_scope(variant: str, block: XceptionBlock, unit: int) -> str:
    return f"{variant}/{block.flow}/block{block.block}/unit_{unit}/xception_module"


def xception_separable_scope(unit_scope: str, i: int) -> str:
    """``.../xception_module/separable_conv<i>`` (i = 1..3); split by :func:`separable_scopes`."""
    return f"{unit_scope}/separable_conv{i}"


def xception_shortcut_scope(unit_scope: str) -> str:
    return f"{unit_scope}/shortcut"


def xception_low_level_scope(variant: str) -> str:
    """The pointwise scope whose output (BN, no ReLU) feeds the decoder (OS 4, 256 ch)."""
    block = next(b for b in xception_blocks(variant)
                 if b.flow == "entry_flow" and b.block == _XCEPTION_LOW_LEVEL_BLOCK[variant])
    return separable_scopes(xception_separable_scope(xception_unit_scope(variant, block, 1), 2))[1]


def xception_logits_scope(variant: str) -> str:
    """ImageNet classifier of the backbone-only checkpoints.

    AMBIGUITY: SPEC §7 lists the ImageNet checkpoints ``xception_65`` / ``xception_71`` but no
    name for their classifier. Choice: ``<variant>/logits`` holding ``weights`` [1,1,2048,1001]
    and ``biases`` [1001] (a slim 1×1 conv without batch norm on the globally pooled features,
    1001 classes = background + 1000 as in slim's ImageNet models).
    """
    return f"{variant}/logits"


# --- MobileNet-v2 -----------------------------------------------------------------------------

MOBILENET_V2_SCOPE = "MobilenetV2"
MOBILENET_V2_STEM_DEPTH = 32

# (expansion, output channels, stride) of expanded_conv, expanded_conv_1 .. expanded_conv_16:
# slim's MobileNet-v2 (multiplier 1.0). SPEC §7: "MobilenetV2/expanded_conv/{depthwise,project}
# (no expand)", "k = 1..16", "DeepLab stops at expanded_conv_16 (320 ch)".
MOBILENET_V2_UNITS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
MOBILENET_V2_FEATURES = 320
MOBILENET_V2_CONV_1_DEPTH = 1280  # ImageNet checkpoints only


def mobilenet_v2_stem_scope() -> str:
    return f"{MOBILENET_V2_SCOPE}/Conv"


def mobilenet_v2_unit_scope(k: int) -> str:
    """``MobilenetV2/expanded_conv`` (k = 0) or ``MobilenetV2/expanded_conv_<k>``."""
    return f"{MOBILENET_V2_SCOPE}/expanded_conv" + (f"_{k}" if k else "")


def mobilenet_v2_unit_scopes(k: int) -> dict[str, str]:
    """``{"expand", "depthwise", "project": scope}`` of unit k (no ``expand`` at expansion 1)."""
    unit = mobilenet_v2_unit_scope(k)
    names = ("depthwise", "project") if MOBILENET_V2_UNITS[k][0] == 1 else ("expand", "depthwise", "project")
    return {n: f"{unit}/{n}" for n in names}


def mobilenet_v2_head_scopes() -> tuple[str, str]:
    """``(MobilenetV2/Conv_1, MobilenetV2/Logits/Conv2d_1c_1x1)`` of ImageNet checkpoints.

    AMBIGUITY: SPEC §7 writes "``Conv_1`` and ``Logits`` exist only in ImageNet checkpoints"
    in the row whose names all start with ``MobilenetV2/``. Choice: both under
    ``MobilenetV2/`` (slim's layout): ``MobilenetV2/Conv_1`` (1×1, 320→1280, + BatchNorm) and
    ``MobilenetV2/Logits/Conv2d_1c_1x1`` (1×1, 1280→1001, ``weights`` + ``biases``).
    """
    return f"{MOBILENET_V2_SCOPE}/Conv_1", f"{MOBILENET_V2_SCOPE}/Logits/Conv2d_1c_1x1"


# --- heads ------------------------------------------------------------------------------------

IMAGE_POOLING_SCOPE = "image_pooling"
CONCAT_PROJECTION_SCOPE = "concat_projection"
DPC_SCOPE = "meta_architecture"
DECODER_PROJECTION_SCOPE = "decoder/feature_projection0"
LOGITS_SCOPE = "logits/semantic"


def aspp_scope(i: int) -> str:
    """``aspp<i>``: i = 0 the 1×1 branch, 1..3 the 3×3 atrous branches (split with
    :func:`separable_scopes` when separable)."""
    return f"aspp{i}"


def dpc_branch_scope(i: int) -> str:
    return f"{DPC_SCOPE}/branch{i}"


def dpc_projection_scope() -> str:
    return f"{DPC_SCOPE}/{CONCAT_PROJECTION_SCOPE}"


def decoder_separable_scope(i: int) -> str:
    """``decoder/decoder_conv<i>`` (i = 0, 1), split with :func:`separable_scopes`."""
    return f"decoder/decoder_conv{i}"


def decoder_regular_scope(j: int, feature: int = 0) -> str:
    """``decoder/decoder_conv<i>/decoder_conv<i>_<j>``, j = 1, 2: the two REGULAR 3×3 convs.

    AMBIGUITY: SPEC §7 decoder row: "``decoder/decoder_conv{0,1}_{depthwise,pointwise}``
    (separable; conv0 input 304 ch) or ``decoder/decoder_conv<i>/decoder_conv<i>_{1,2}``
    (regular)". The separable form numbers the two convs 0, 1; the regular form already numbers
    them ``_1``, ``_2`` (SPEC §7: "``slim.repeat`` with scope S gives ``S/S_1``, ``S/S_2``").
    Choice: in the regular form ``<i>`` is the index of the low-level feature (there is one,
    so i = 0) and the two convs of SPEC §2.5 ("two regular 3×3 convs of 256 (304→256,
    256→256)") are ``decoder_conv0/decoder_conv0_1`` (304→256) and
    ``decoder_conv0/decoder_conv0_2`` (256→256).
    """
    scope = f"decoder/decoder_conv{feature}"
    return f"{scope}/decoder_conv{feature}_{j}"


# --- DPC cell ---------------------------------------------------------------------------------

# SPEC §3.2: the published top-1 Cityscapes cell (dense_prediction_cell_branch5_top1_cityscapes.json).
TOP1_CITYSCAPES_DPC = (
    {"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1},
    {"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1},
    {"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0},
)


def _dpc_is_separable(branch: Mapping) -> bool:
    """3×3 ``conv`` branches are separable; 1×1 convs and pyramid pooling are 1×1 convs."""
    if branch["op"] == "pyramid_pooling":
        return False
    if branch["op"] != "conv":
        raise ValueError(f"unknown DPC op {branch['op']!r}")
    kernel = branch.get("kernel", 1)
    kernel = kernel if isinstance(kernel, (int, np.integer)) else kernel[0]
    if kernel not in (1, 3):
        raise ValueError(f"DPC conv kernel must be 1 or 3, got {branch['kernel']!r}")
    return kernel == 3


# --- models -----------------------------------------------------------------------------------

class ModelConfig(NamedTuple):
    backbone: str  # xception_65 | xception_71 | mobilenet_v2
    context: str  # "aspp" | "dpc"
    atrous_branches: int  # ASPP's 3×3 atrous branches (0: image pooling + aspp0 only)
    decoder: bool


# AMBIGUITY: SPEC §7 names the xception65 / xception71 heads as separable ("aspp<i>_{depthwise,
# pointwise} ... (separable, the default)", "decoder_conv{0,1}_{depthwise,pointwise}
# (separable ...)"); the DeepLab models here use the separable forms throughout (regular 3×3
# ASPP/decoder convs only in hnasnet, SPEC §2.5). The MobileNet-v2 models have no decoder
# (the Cityscapes/VOC ones; the ADE20K one with a decoder is not modelled).
MODELS = {
    "xception65": ModelConfig("xception_65", "aspp", 3, True),
    "xception71_dpc": ModelConfig("xception_71", "dpc", 0, True),
    "xception71_aspp": ModelConfig("xception_71", "aspp", 3, True),
    "mobilenetv2_aspp": ModelConfig("mobilenet_v2", "aspp", 3, False),
    "mobilenetv2_dpc": ModelConfig("mobilenet_v2", "dpc", 0, False),
    "mobilenetv2_deeplabv3": ModelConfig("mobilenet_v2", "aspp", 0, False),
}

# ASPP atrous rates at OS 16 (DeepLab's 6/12/18; ×16/OS, so 12/24/36 at OS 8).
ASPP_RATES_OS16 = (6, 12, 18)


# --- hnasnet ----------------------------------------------------------------------------------

class Genotype(NamedTuple):
    operations: tuple[str, ...]
    used_hiddenstates: tuple[int, ...]
    hiddenstate_indices: tuple[int, ...]
    backbone: tuple[int, ...]  # 0..3 = downsample 4, 8, 16, 32


# SPEC §2.5: the published result of the official TF1 release ("hnasnet").
PUBLISHED_HNASNET = Genotype(
    operations=("atrous_5x5", "separable_3x3_2", "separable_3x3_2", "atrous_3x3",
                "separable_3x3_2", "separable_3x3_2", "separable_5x5_2",
                "separable_5x5_2", "separable_5x5_2", "atrous_5x5"),
    used_hiddenstates=(1, 1, 0, 0, 0, 0, 0),
    hiddenstate_indices=(1, 0, 1, 0, 3, 1, 4, 2, 3, 5),
    backbone=(0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1),
)
HNASNET_SCOPE = "hnasnet"
HNASNET_STEM_DEPTHS = (64, 64, 128)  # SPEC §2.5 stem: conv 64 s2, conv 64, conv 128 s2
HNASNET_MULTIPLIERS = {"S": 20, "M": 32, "L": 48}
# SPEC §2.5: "Low-level decoder feature: Cell_2 (OS 4)". Cells are numbered from 0 as in the
# scopes ``cell_<n>``; cells 0, 1, 2 all sit at downsample 4 on the published path, so the
# reading (0- or 1-based) does not change any shape.
HNASNET_LOW_LEVEL_CELL = 2


def hnasnet_stem_scopes() -> list[tuple[str, str]]:
    """``[(hnasnet/conv<i>, hnasnet/conv<i>_bn)]`` for i = 0, 1, 2."""
    return [(f"{HNASNET_SCOPE}/conv{i}", f"{HNASNET_SCOPE}/conv{i}_bn") for i in range(3)]


def hnasnet_cell_scope(n: int) -> str:
    return f"{HNASNET_SCOPE}/cell_{n}"


def hnasnet_op_scope(cell_scope: str, block: int, side: str) -> str:
    """``.../cell_<n>/comb_iter_<block>/{left,right}``."""
    return f"{cell_scope}/comb_iter_{block}/{side}"


def hnasnet_bn(scope: str, bn_subscope: bool = False) -> str:
    """The variable scope of an explicitly named hnasnet batch norm (``conv0_bn``, ``prev_bn``,
    ``beginning_bn``, ``bn_sep_<k>x<k>_<j>``, ``bn_atr_<k>x<k>``).

    AMBIGUITY: SPEC §7's naming rule puts a conv's batch norm at ``S/BatchNorm/...``
    ("when a batch norm follows"), while its hnasnet row names the batch norms as scopes of
    their own ("``conv{0,1,2}_bn``", "``prev_bn``", "``beginning_bn``", "``bn_sep_<k>x<k>_<j>``",
    "``bn_atr_<k>x<k>``"). A slim batch norm called with an explicit scope keeps its variables
    directly in that scope (``BatchNorm`` is only the default scope name), as in slim's NASNet
    checkpoints. Choice (default): ``hnasnet/conv0_bn/beta`` etc.; ``bn_subscope=True`` gives
    ``hnasnet/conv0_bn/BatchNorm/beta`` for an importer that wants to accept both.
    """
    return bn_scope(scope) if bn_subscope else scope


def parse_hnasnet_op(op: str) -> tuple[str, int, int]:
    """``separable_3x3_2`` → ("separable", 3, 2); ``atrous_5x5`` → ("atrous", 5, 1)."""
    parts = op.split("_")
    kind, size = parts[0], parts[1]
    k = int(size.split("x")[0])
    if kind == "separable" and len(parts) == 3:
        return kind, k, int(parts[2])
    if kind == "atrous" and len(parts) == 2:
        return kind, k, 1
    raise ValueError(f"unsupported hnasnet operation {op!r} (the derived model has only "
                     "separable_<k>x<k>_<n> and atrous_<k>x<k>)")


# ---------------------------------------------------------------------------------------------
# Table builders
# ---------------------------------------------------------------------------------------------

def _kernel_gain(rectified: bool) -> float:
    return RECTIFIED_GAIN if rectified else LINEAR_GAIN


class _Table:
    """Collects ``{name: Shape}`` in graph order; refuses duplicates.

    ``rectified``: whether the conv's input comes straight from a ReLU (He scale) or not;
    ``gamma_gain``: scale of the following batch norm's gamma (both only steer
    :func:`random_weights`).
    """

    def __init__(self):
        self.vars: dict[str, Shape] = {}

    def add(self, name: str, dims, kind: str, gain: float = 1.0):
        if name in self.vars:
            raise ValueError(f"duplicate official variable {name!r}")
        self.vars[name] = Shape(dims, kind, gain=gain)

    def bn(self, bn: str, channels: int, *, gamma_gain: float = 1.0):
        for param, name in bn_names(bn).items():
            self.add(name, (channels,), param, gamma_gain if param == GAMMA else 1.0)

    def conv(self, scope: str, kernel, cin: int, cout: int, *, bn: bool = True, rectified: bool = True,
             gamma_gain: float = 1.0):
        """slim conv ``S``: ``S/weights`` + ``S/BatchNorm`` (or ``S/biases`` without BN)."""
        kh, kw = _pair(kernel)
        self.add(weights_name(scope), (kh, kw, cin, cout), KERNEL, _kernel_gain(rectified))
        if bn:
            self.bn(bn_scope(scope), cout, gamma_gain=gamma_gain)
        else:
            self.add(biases_name(scope), (cout,), BIAS)

    def depthwise(self, scope: str, kernel, channels: int, *, rectified: bool = True):
        kh, kw = _pair(kernel)
        self.add(depthwise_name(scope), (kh, kw, channels, 1), DEPTHWISE, _kernel_gain(rectified))
        self.bn(bn_scope(scope), channels)

    def separable(self, scope: str, kernel, cin: int, cout: int, *, rectified: bool = True,
                  relu_inside: bool = True, gamma_gain: float = 1.0):
        """DeepLab's split separable conv: ``S_depthwise`` (+ BN) and ``S_pointwise`` (+ BN);
        ``relu_inside``: a ReLU sits between them (ASPP, DPC, decoder, Xception exit block 2)."""
        dw, pw = separable_scopes(scope)
        self.depthwise(dw, kernel, cin, rectified=rectified)
        self.conv(pw, 1, cin, cout, rectified=relu_inside, gamma_gain=gamma_gain)


def _xception_backbone(t: _Table, variant: str) -> tuple[int, bool]:
    """Returns (feature channels, whether the features come out of a ReLU)."""
    conv1_1, conv1_2 = xception_stem_scopes(variant)
    t.conv(conv1_1, 3, 3, XCEPTION_STEM_DEPTHS[0], rectified=False)
    t.conv(conv1_2, 3, XCEPTION_STEM_DEPTHS[0], XCEPTION_STEM_DEPTHS[1])
    cin, rectified = XCEPTION_STEM_DEPTHS[1], True
    for block in xception_blocks(variant):
        for unit in range(1, block.units + 1):
            scope = xception_unit_scope(variant, block, unit)
            c = cin
            for i, depth in enumerate(block.depths, 1):
                last_of_residual = i == 3 and block.skip != "none"
                t.separable(xception_separable_scope(scope, i), 3, c, depth,
                            rectified=not block.relu_inside or i > 1 or rectified,
                            relu_inside=block.relu_inside,
                            gamma_gain=RESIDUAL_GAMMA_GAIN if last_of_residual else 1.0)
                c = depth
            if block.skip == "conv":
                t.conv(xception_shortcut_scope(scope), 1, cin, block.depths[-1], rectified=rectified)
            cin, rectified = block.depths[-1], block.relu_inside
    return cin, rectified


def _mobilenet_v2_backbone(t: _Table) -> tuple[int, bool]:
    """Returns (feature channels, False: the features are a projection's BN, no ReLU6)."""
    t.conv(mobilenet_v2_stem_scope(), 3, 3, MOBILENET_V2_STEM_DEPTH, rectified=False)
    cin = MOBILENET_V2_STEM_DEPTH
    for k, (expansion, cout, stride) in enumerate(MOBILENET_V2_UNITS):
        scopes = mobilenet_v2_unit_scopes(k)
        inner = cin * expansion
        if "expand" in scopes:
            t.conv(scopes["expand"], 1, cin, inner, rectified=False)
        t.depthwise(scopes["depthwise"], 3, inner)
        residual = stride == 1 and cin == cout  # atrous stride changes never meet a residual here
        t.conv(scopes["project"], 1, inner, cout,
               gamma_gain=RESIDUAL_GAMMA_GAIN if residual else 1.0)
        cin = cout
    return cin, False


def _aspp_table(t: _Table, cin: int, atrous_branches: int, *, separable: bool = True,
                rectified: bool = True):
    t.conv(IMAGE_POOLING_SCOPE, 1, cin, SEPARABLE_DEPTH, rectified=rectified)
    t.conv(aspp_scope(0), 1, cin, SEPARABLE_DEPTH, rectified=rectified)
    for i in range(1, atrous_branches + 1):
        if separable:
            t.separable(aspp_scope(i), 3, cin, SEPARABLE_DEPTH, rectified=rectified)
        else:
            t.conv(aspp_scope(i), 3, cin, SEPARABLE_DEPTH, rectified=rectified)
    t.conv(CONCAT_PROJECTION_SCOPE, 1, SEPARABLE_DEPTH * (2 + atrous_branches), SEPARABLE_DEPTH)


def _dpc_table(t: _Table, cin: int, config: Sequence[Mapping], *, rectified: bool = True):
    for i, branch in enumerate(config):
        c, r = (cin, rectified) if branch["input"] < 0 else (SEPARABLE_DEPTH, True)
        if _dpc_is_separable(branch):
            t.separable(dpc_branch_scope(i), 3, c, SEPARABLE_DEPTH, rectified=r)
        else:
            t.conv(dpc_branch_scope(i), 1, c, SEPARABLE_DEPTH, rectified=r)
    t.conv(dpc_projection_scope(), 1, SEPARABLE_DEPTH * len(config), SEPARABLE_DEPTH)


def _decoder_table(t: _Table, low_level_channels: int, *, separable: bool = True):
    # The low-level feature is a batch norm's output (no ReLU) in Xception and hnasnet.
    t.conv(DECODER_PROJECTION_SCOPE, 1, low_level_channels, DECODER_PROJECTION_DEPTH, rectified=False)
    cin = SEPARABLE_DEPTH + DECODER_PROJECTION_DEPTH  # 304
    for i in range(2):
        if separable:
            t.separable(decoder_separable_scope(i), 3, cin, SEPARABLE_DEPTH)
        else:
            t.conv(decoder_regular_scope(i + 1), 3, cin, SEPARABLE_DEPTH)
        cin = SEPARABLE_DEPTH


def _logits_table(t: _Table, num_classes: int):
    t.conv(LOGITS_SCOPE, 1, SEPARABLE_DEPTH, num_classes, bn=False)


def with_training_extras(table: Mapping[str, Shape], *, ema: bool = False, momentum: bool = False,
                         global_step: bool = False) -> dict[str, Shape]:
    """``table`` plus what a training run leaves in a checkpoint.

    - ``ema``: ``<var>/ExponentialMovingAverage`` for EVERY variable (SPEC: slim MobileNet-v2
      ImageNet checkpoints have them; "where they exist, they are the values to load");
    - ``momentum``: ``<var>/Momentum`` for the trainable variables only (kernels, biases,
      gamma, beta: the optimizer has no slot for moving statistics);
    - ``global_step``: an int64 scalar.
    """
    out: dict[str, Shape] = {}
    for name, shape in table.items():
        out[name] = shape
        if shape.slot is not None or shape.kind == GLOBAL_STEP:
            continue
        gain = getattr(shape, "gain", 1.0)
        if ema:
            out[f"{name}/{EMA_SLOT}"] = Shape(shape, shape.kind, EMA_SLOT, gain)
        if momentum and shape.kind in TRAINABLE_KINDS:
            out[f"{name}/{MOMENTUM_SLOT}"] = Shape(shape, shape.kind, MOMENTUM_SLOT, gain)
    if global_step:
        out["global_step"] = Shape((), GLOBAL_STEP)
    return out


def deeplab_table(model: str, num_classes: int = 19, *, dpc_config: Sequence[Mapping] = TOP1_CITYSCAPES_DPC,
                  **extras) -> dict[str, Shape]:
    """``{name: Shape}`` of a whole DeepLab model of :data:`MODELS` (``extras``: see
    :func:`with_training_extras`)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    cfg = MODELS[model]
    t = _Table()
    if cfg.backbone == "mobilenet_v2":
        channels, rectified = _mobilenet_v2_backbone(t)
    else:
        channels, rectified = _xception_backbone(t, cfg.backbone)
    if cfg.context == "dpc":
        _dpc_table(t, channels, dpc_config, rectified=rectified)
    else:
        _aspp_table(t, channels, cfg.atrous_branches, rectified=rectified)
    if cfg.decoder:
        low = t.vars[weights_name(xception_low_level_scope(cfg.backbone))]
        _decoder_table(t, low[3])
    _logits_table(t, num_classes)
    return with_training_extras(t.vars, **extras)


def xception_imagenet_table(variant: str = "xception_65", num_classes: int = 1001, **extras) -> dict[str, Shape]:
    """The ImageNet ``xception_65`` / ``xception_71`` checkpoint: backbone + ``<variant>/logits``
    (see :func:`xception_logits_scope`)."""
    t = _Table()
    channels, rectified = _xception_backbone(t, variant)
    t.conv(xception_logits_scope(variant), 1, channels, num_classes, bn=False, rectified=rectified)
    return with_training_extras(t.vars, **extras)


def mobilenet_v2_imagenet_table(num_classes: int = 1001, **extras) -> dict[str, Shape]:
    """slim ``mobilenet_v2_1.0_224``: Conv … expanded_conv_16, ``Conv_1`` (320→1280 + BN) and
    ``Logits/Conv2d_1c_1x1`` (1280→1001 with biases). Real ones carry EMA shadows:
    ``ema=True``."""
    t = _Table()
    channels, rectified = _mobilenet_v2_backbone(t)
    conv_1, logits = mobilenet_v2_head_scopes()
    t.conv(conv_1, 1, channels, MOBILENET_V2_CONV_1_DEPTH, rectified=rectified)
    t.conv(logits, 1, MOBILENET_V2_CONV_1_DEPTH, num_classes, bn=False)
    return with_training_extras(t.vars, **extras)


IMAGENET_CHECKPOINTS = ("xception_65", "xception_71", "mobilenet_v2_1.0_224")


def imagenet_table(name: str, num_classes: int = 1001, **extras) -> dict[str, Shape]:
    """Dispatch on the official file names of :data:`IMAGENET_CHECKPOINTS`."""
    if name in XCEPTION_VARIANTS:
        return xception_imagenet_table(name, num_classes, **extras)
    if name == "mobilenet_v2_1.0_224":
        return mobilenet_v2_imagenet_table(num_classes, **extras)
    raise ValueError(f"unknown ImageNet checkpoint {name!r}; expected one of {IMAGENET_CHECKPOINTS}")


def hnasnet_cell_plan(genotype: Genotype = PUBLISHED_HNASNET, filter_multiplier: int = 20) -> list[dict]:
    """Per cell: level, stride, upsampled, filters, input channels of H^{l-1} / H^{l-2}, output.

    SPEC §2.5: "Filter size per cell = F · scaling, scaling ×2 per down-step, ÷2 per up-step
    (upsample the input ×2 before an up-step cell). Cell outputs 5·F·s/4 channels."
    AMBIGUITY: which stem outputs are H^{l-1}, H^{l-2} of the first cells is not stated.
    Choice: the stem's last two outputs, conv1_bn (64 ch, OS 2) and conv2_bn (128 ch, OS 4):
    cell 0 sees H^{l-1} = conv2 (128 ch), H^{l-2} = conv1 (64 ch, resized); cell 1 sees
    H^{l-2} = conv2. (This reproduces SPEC §2.6's parameter counts to the last digit.)
    A first cell at level 1 (downsample 8) counts as a down-step from the stem's OS 4
    (scaling 2, stride 2); the published path starts at level 0.
    """
    n_out = sum(1 for used in genotype.used_hiddenstates if not used)
    channels = [HNASNET_STEM_DEPTHS[1], HNASNET_STEM_DEPTHS[2]]  # outputs so far (conv1, conv2)
    scaling, previous_level = 1.0, 0
    plan = []
    for n, level in enumerate(genotype.backbone):
        if abs(level - previous_level) > 1:
            raise ValueError(f"backbone jumps from level {previous_level} to {level} at cell {n}")
        stride, upsample = 1, False
        if level == previous_level + 1:
            stride, scaling = 2, scaling * 2
        elif level == previous_level - 1:
            upsample, scaling = True, scaling / 2
        filters = int(filter_multiplier * scaling)
        plan.append(dict(cell=n, level=level, stride=stride, upsample=upsample, filters=filters,
                         prev_channels=channels[-1], prev_prev_channels=channels[-2],
                         out_channels=n_out * filters))
        channels.append(n_out * filters)
        previous_level = level
    return plan


def hnasnet_table(filter_multiplier: int = 20, num_classes: int = 19, *,
                  genotype: Genotype = PUBLISHED_HNASNET, bn_subscope: bool = False,
                  head: bool = True, **extras) -> dict[str, Shape]:
    """An Auto-DeepLab ``nas_hnasnet`` checkpoint (F = 20 / 32 / 48 for S / M / L).

    Backbone (SPEC §7 hnasnet row, §2.5 derived model): stem ``hnasnet/conv{0,1,2}`` (3×3;
    64, 64, 128; no biases) + ``conv{0,1,2}_bn``; per cell ``prev_1x1`` + ``prev_bn`` (only when
    H^{l-2}'s channels differ from the cell's filters), ``1x1`` + ``beginning_bn``, and per block
    ``comb_iter_<i>/{left,right}/``: ``separable_<k>x<k>_<j>`` (FUSED: ``depthwise_weights``
    [k,k,C,1] + ``pointwise_weights`` [1,1,C,C]) + ``bn_sep_<k>x<k>_<j>`` for j = 1, 2, or
    ``atrous_<k>x<k>`` (regular ``weights`` [k,k,C,C]) + ``bn_atr_<k>x<k>``. Left op =
    ``operations[2i]`` on hidden state ``hiddenstate_indices[2i]``, right = ``[2i+1]``.

    Head (``head=True``; SPEC §2.5 "Head configuration that reproduces Table 2"): at the graph
    root, ASPP ``image_pooling`` + ``aspp0`` (1×1) + ``aspp1..3`` REGULAR 3×3 (``aspp<i>/weights``,
    not depthwise/pointwise), all 256, ``concat_projection`` 1280→256; decoder
    ``feature_projection0`` (Cell_2 → 48) and the regular convs of
    :func:`decoder_regular_scope`; logits. ASPP rates do not change any shape.
    AMBIGUITY: SPEC §2.5 "Ops come in pairs per block" — read as block i = ops 2i (left), 2i+1
    (right) with ``comb_iter_<i>`` numbering blocks from 0.
    """
    t = _Table()
    cin = 3
    for (conv, bn), depth in zip(hnasnet_stem_scopes(), HNASNET_STEM_DEPTHS):
        t.add(weights_name(conv), (3, 3, cin, depth), KERNEL, _kernel_gain(cin != 3))
        t.bn(hnasnet_bn(bn, bn_subscope), depth)
        cin = depth
    plan = hnasnet_cell_plan(genotype, filter_multiplier)
    for cell in plan:
        scope, c = hnasnet_cell_scope(cell["cell"]), cell["filters"]
        if cell["prev_prev_channels"] != c:
            t.add(weights_name(f"{scope}/prev_1x1"), (1, 1, cell["prev_prev_channels"], c), KERNEL)
            t.bn(hnasnet_bn(f"{scope}/prev_bn", bn_subscope), c)
        t.add(weights_name(f"{scope}/1x1"), (1, 1, cell["prev_channels"], c), KERNEL)
        t.bn(hnasnet_bn(f"{scope}/beginning_bn", bn_subscope), c)
        for i in range(len(genotype.operations) // 2):
            for side, op in (("left", genotype.operations[2 * i]), ("right", genotype.operations[2 * i + 1])):
                op_scope = hnasnet_op_scope(scope, i, side)
                kind, k, repeats = parse_hnasnet_op(op)
                # Every op starts with a ReLU (He-scaled kernels); inside a fused separable conv
                # the pointwise half sees the depthwise output directly (LeCun).
                if kind == "separable":
                    for j in range(1, repeats + 1):
                        sep = f"{op_scope}/separable_{k}x{k}_{j}"
                        t.add(depthwise_name(sep), (k, k, c, 1), DEPTHWISE, RECTIFIED_GAIN)
                        t.add(pointwise_name(sep), (1, 1, c, c), KERNEL, LINEAR_GAIN)
                        t.bn(hnasnet_bn(f"{op_scope}/bn_sep_{k}x{k}_{j}", bn_subscope), c,
                             gamma_gain=HNASNET_OP_GAMMA_GAIN if j == repeats else 1.0)
                else:
                    t.add(weights_name(f"{op_scope}/atrous_{k}x{k}"), (k, k, c, c), KERNEL, RECTIFIED_GAIN)
                    t.bn(hnasnet_bn(f"{op_scope}/bn_atr_{k}x{k}", bn_subscope), c,
                         gamma_gain=HNASNET_OP_GAMMA_GAIN)
    if head:
        # AMBIGUITY: SPEC §2.5 does not say whether a ReLU precedes the ASPP; the cell output
        # is a concat of BN outputs, so the table assumes none (only random_weights' scale).
        _aspp_table(t, plan[-1]["out_channels"], 3, separable=False, rectified=False)
        _decoder_table(t, plan[HNASNET_LOW_LEVEL_CELL]["out_channels"], separable=False)
        _logits_table(t, num_classes)
    return with_training_extras(t.vars, **extras)


def trainable_parameter_count(table: Mapping[str, Shape]) -> int:
    """Conv kernels + BN gamma/beta + biases (SPEC §2.5's counting), slots excluded."""
    return int(sum(np.prod(s, dtype=np.int64) for s in table.values()
                   if s.kind in TRAINABLE_KINDS and s.slot is None))


def shape_map(table: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """``{name: [dims]}``: the format of ``get_variable_to_shape_map()``."""
    return {name: [int(d) for d in shape] for name, shape in table.items()}


# ---------------------------------------------------------------------------------------------
# Checkpoint writer and random weights
# ---------------------------------------------------------------------------------------------

def _name_seed(seed: int, name: str) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))]


def _infer_kind(name: str, dims: Sequence[int]) -> tuple[str, str | None]:
    """(kind, slot) of a plain shape, read from the name."""
    if name == "global_step":
        return GLOBAL_STEP, None
    for slot in (EMA_SLOT, MOMENTUM_SLOT):
        if name.endswith("/" + slot):
            return _infer_kind(name[: -len(slot) - 1], dims)[0], slot
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "depthwise_weights":
        return DEPTHWISE, None
    if leaf in ("weights", "pointwise_weights"):
        return KERNEL, None
    if leaf == "biases":
        return BIAS, None
    if leaf in BN_PARAMS:
        return leaf, None
    raise ValueError(f"cannot tell what {name!r} {list(dims)} is; pass a table of Shape values")


def random_weights(shapes: Mapping[str, Sequence[int]], seed: int = 0, *, gain: float = 1.0) -> dict[str, np.ndarray]:
    """Sensibly scaled random values for a table (``Shape`` values, or plain shapes whose kind
    is read from the name's last component; those get hint 1).

    - kernels [kh,kw,in,out]: N(0, gain·hint·2/(kh·kw·in)) — He (fan-in) where the table marks
      the input as rectified (hint 1), LeCun (hint 1/2) where it is not (image, a BN output,
      a residual sum, the depthwise half of a separable conv without a ReLU between);
    - depthwise [kh,kw,in,1]: N(0, gain·hint·2/(kh·kw)) (fan-in kh·kw);
    - biases U(−0.1, 0.1); BN gamma hint·U(0.8, 1.2) (hint 1, except the last BN of a residual
      branch: :data:`RESIDUAL_GAMMA_GAIN`, and of an hnasnet op: :data:`HNASNET_OP_GAMMA_GAIN`),
      beta U(−0.1, 0.1), moving_mean N(0, 0.1²), moving_variance U(0.5, 1.5) (positive);
    - EMA shadows: the variable's distribution from an independent stream (so an importer that
      loads the raw value instead of the shadow is caught); Momentum slots N(0, 1e-3²);
      ``global_step``: int64 30000.

    Each value depends only on (seed, name), not on the rest of the table.
    With these, 65×65 images through Xception-71 + DPC + decoder give logits of std ~O(1).
    """
    out: dict[str, np.ndarray] = {}
    for name, spec in shapes.items():
        dims = tuple(int(d) for d in spec)
        if isinstance(spec, Shape):
            kind, slot, hint = spec.kind, spec.slot, spec.gain
        else:
            (kind, slot), hint = _infer_kind(name, dims), 1.0
        rng = np.random.default_rng(_name_seed(seed, name))
        if kind == GLOBAL_STEP:
            out[name] = np.asarray(30000, np.int64)
            continue
        if slot == MOMENTUM_SLOT:
            out[name] = (1e-3 * rng.standard_normal(dims)).astype(np.float32)
            continue
        if kind == KERNEL:
            fan_in = int(np.prod(dims[:-1]))
            value = rng.standard_normal(dims) * np.sqrt(gain * hint * 2.0 / fan_in)
        elif kind == DEPTHWISE:
            value = rng.standard_normal(dims) * np.sqrt(gain * hint * 2.0 / (dims[0] * dims[1]))
        elif kind in (BIAS, BETA):
            value = rng.uniform(-0.1, 0.1, dims)
        elif kind == GAMMA:
            value = hint * rng.uniform(0.8, 1.2, dims)
        elif kind == MOVING_MEAN:
            value = 0.1 * rng.standard_normal(dims)
        elif kind == MOVING_VARIANCE:
            value = rng.uniform(0.5, 1.5, dims)
        else:
            raise ValueError(f"unknown kind {kind!r} of {name!r}")
        out[name] = value.astype(np.float32)
    return out


def write_checkpoint(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray], *,
                     state_file: bool = False) -> str:
    """Write a TF1-style V2 checkpoint (``prefix.index`` + ``prefix.data-00000-of-00001``) whose
    variables are exactly ``tensors`` (any names, via ``tf.raw_ops.SaveV2``; no object graph).

    ``state_file=True`` also writes the folder's ``checkpoint`` file (as ``tf.compat.v1.train.Saver``
    does) so that ``tf.train.latest_checkpoint(folder)`` finds ``prefix``. Checks the result
    with ``tf.train.load_checkpoint(prefix).get_variable_to_shape_map()`` and returns ``prefix``.
    """
    prefix = os.fspath(prefix)
    if not tensors:
        raise ValueError("a checkpoint needs at least one tensor")
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    names = list(tensors)
    values = [tf.convert_to_tensor(np.asarray(tensors[n])) for n in names]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=tf.constant(names, tf.string),
                      shape_and_slices=tf.constant([""] * len(names), tf.string), tensors=values)
    if state_file:
        base = os.path.basename(prefix)
        with open(os.path.join(folder, "checkpoint"), "w", encoding="utf-8") as f:
            f.write(f'model_checkpoint_path: "{base}"\nall_model_checkpoint_paths: "{base}"\n')
    written = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    expected = {n: list(np.shape(tensors[n])) for n in names}
    if {n: list(s) for n, s in written.items()} != expected:
        missing = sorted(set(expected) - set(written))[:5]
        extra = sorted(set(written) - set(expected))[:5]
        raise RuntimeError(f"checkpoint {prefix} does not hold what was written "
                           f"(missing {missing}, extra {extra})")
    return prefix


def read_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of a checkpoint as numpy arrays."""
    reader = tf.train.load_checkpoint(os.fspath(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


# ---------------------------------------------------------------------------------------------
# Forward pass of the official graph (raw tf.nn ops)
# ---------------------------------------------------------------------------------------------

class WeightReader:
    """Read access to ``{name: array}`` (as float32 tensors) that records the names read in
    ``used``."""

    def __init__(self, weights: Mapping[str, np.ndarray], used: set | None):
        self._weights = weights
        self.used = used if used is not None else set()

    def __getitem__(self, name: str) -> tf.Tensor:
        if name not in self._weights:
            raise KeyError(f"official variable {name!r} is missing from the weights")
        self.used.add(name)
        return tf.constant(np.asarray(self._weights[name], np.float32))


def preprocess(images) -> tf.Tensor:
    """SPEC §7: "pixels to [−1, 1] as (2/255)·x − 1"."""
    return tf.cast(images, tf.float32) * (2.0 / 255.0) - 1.0


def atrous_schedule(unit_strides: Sequence[int], output_stride: int, current_stride: int = 2) -> list[tuple[int, int]]:
    """DeepLab's atrous rule: ``[(stride, rate)]`` per unit. Walking the units, once the stride
    so far equals ``output_stride`` a unit runs at stride 1 with the current rate, and the rate
    is multiplied by the unit's nominal stride; before that, units keep their stride at rate 1.
    ``current_stride`` = 2: the stem's stride-2 conv has already run."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    schedule, rate = [], 1
    for stride in unit_strides:
        if current_stride == output_stride:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, 1))
            current_stride *= stride
    return schedule


def scale_dimension(dim: int, scale: float) -> int:
    """DeepLab's ``int((dim − 1)·scale + 1)``: the size of a k·OS+1 map at another stride."""
    return int((float(dim) - 1.0) * scale + 1.0)


def fixed_padding(x: tf.Tensor, kernel_size, rate=1) -> tf.Tensor:
    """Xception's explicit symmetric padding (SPEC §7): per axis k_eff = k + (k−1)(rate−1),
    pad (k_eff−1)//2 before and the rest after (then a VALID conv)."""
    pads = []
    for k, r in zip(_pair(kernel_size), _pair(rate)):
        total = k + (k - 1) * (r - 1) - 1
        pads.append([total // 2, total - total // 2])
    return tf.pad(x, [[0, 0], pads[0], pads[1], [0, 0]])


def resize_bilinear(x: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize with ``align_corners=True`` (SPEC §7: "everywhere")."""
    return tf.compat.v1.image.resize_bilinear(x, [int(size[0]), int(size[1])], align_corners=True)


def _spatial(x: tf.Tensor) -> tuple[int, int]:
    return int(x.shape[1]), int(x.shape[2])


def batch_norm(w: WeightReader, x: tf.Tensor, bn: str, eps: float) -> tf.Tensor:
    """Inference batch norm from the moving statistics of scope ``bn``."""
    n = bn_names(bn)
    return tf.nn.batch_normalization(x, w[n[MOVING_MEAN]], w[n[MOVING_VARIANCE]], w[n[BETA]],
                                     w[n[GAMMA]], eps)


def _apply_padding(x, kernel_size, rate, padding):
    """``"explicit"``: :func:`fixed_padding` + VALID (Xception); ``"SAME"``: TF's SAME."""
    if padding == "explicit":
        return fixed_padding(x, kernel_size, rate), "VALID"
    if padding != "SAME":
        raise ValueError(f"padding must be 'explicit' or 'SAME', got {padding!r}")
    return x, "SAME"


def conv(w: WeightReader, x: tf.Tensor, scope: str, *, stride: int = 1, rate=1,
         padding: str = "SAME") -> tf.Tensor:
    """Regular conv ``S/weights`` (no BN, no activation)."""
    kernel = w[weights_name(scope)]
    x, pad = _apply_padding(x, kernel.shape[:2], rate, padding)
    return tf.nn.conv2d(x, kernel, strides=stride, padding=pad, dilations=list(_pair(rate)))


def conv_bn(w: WeightReader, x: tf.Tensor, scope: str, eps: float, *, stride: int = 1, rate=1,
            padding: str = "SAME", activation=None) -> tf.Tensor:
    """slim conv with ``normalizer_fn``: conv → ``S/BatchNorm`` → activation."""
    y = batch_norm(w, conv(w, x, scope, stride=stride, rate=rate, padding=padding), bn_scope(scope), eps)
    return activation(y) if activation is not None else y


def depthwise_bn(w: WeightReader, x: tf.Tensor, scope: str, eps: float, *, stride: int = 1, rate=1,
                 padding: str = "SAME", activation=None) -> tf.Tensor:
    """Depthwise conv ``S/depthwise_weights`` → ``S/BatchNorm`` → activation."""
    kernel = w[depthwise_name(scope)]
    rh, rw = _pair(rate)
    if stride > 1 and (rh > 1 or rw > 1):
        raise ValueError(f"{scope}: stride {stride} with rate {rate} (the official graph never does this)")
    x, pad = _apply_padding(x, kernel.shape[:2], (rh, rw), padding)
    y = tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1], padding=pad, dilations=[rh, rw])
    y = batch_norm(w, y, bn_scope(scope), eps)
    return activation(y) if activation is not None else y


def split_separable_bn(w: WeightReader, x: tf.Tensor, scope: str, eps: float, *, stride: int = 1, rate=1,
                       padding: str = "SAME", activation=None) -> tf.Tensor:
    """DeepLab's separable conv ``S``: ``S_depthwise`` → BN → act → ``S_pointwise`` → BN → act.

    In ASPP, DPC and the decoder ``activation`` is ReLU (SPEC §3.1: "BN+ReLU follow BOTH the
    depthwise and the pointwise step"); in Xception it is None except in exit block 2.
    """
    dw, pw = separable_scopes(scope)
    x = depthwise_bn(w, x, dw, eps, stride=stride, rate=rate, padding=padding, activation=activation)
    return conv_bn(w, x, pw, eps, activation=activation)


# --- Xception ---------------------------------------------------------------------------------

def xception_module(w: WeightReader, x: tf.Tensor, scope: str, block: XceptionBlock, *, stride: int,
                    rate: int) -> tuple[tf.Tensor, tf.Tensor]:
    """One Xception unit; returns (output, separable_conv2_pointwise output).

    Three separable 3×3 convs (stride on the third), each preceded by a ReLU — or, in exit
    block 2 (``relu_inside``), with a ReLU after each BN inside instead (SPEC §7: "ReLU inside
    the separable conv"). The skip adds a 1×1 conv + BN of the raw input (``conv``), the raw
    input (``sum``) or nothing (``none``). Xception pads explicitly (:func:`fixed_padding`);
    for stride 1 this equals SAME because k_eff is odd.
    """
    residual, mid = x, None
    inside = tf.nn.relu if block.relu_inside else None
    for i in range(1, 4):
        if not block.relu_inside:
            residual = tf.nn.relu(residual)
        residual = split_separable_bn(w, residual, xception_separable_scope(scope, i), BACKBONE_BN_EPS,
                                      stride=stride if i == 3 else 1, rate=rate, padding="explicit",
                                      activation=inside)
        if i == 2:
            mid = residual
    if block.skip == "conv":
        # A 1×1 kernel needs no padding (k_eff − 1 = 0): VALID with stride 2 keeps pixels 0, 2, ...
        shortcut = conv_bn(w, x, xception_shortcut_scope(scope), BACKBONE_BN_EPS, stride=stride,
                           padding="explicit")
        return residual + shortcut, mid
    if block.skip == "sum":
        return residual + x, mid
    return residual, mid


def xception_features(w: WeightReader, x: tf.Tensor, variant: str, output_stride: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Xception-65/71 up to exit block 2: (features, OS-4 low-level feature).

    Strides and rates per unit: :func:`atrous_schedule` (the stem's stride 2 counts).
    """
    units = [(block, unit) for block in xception_blocks(variant) for unit in range(1, block.units + 1)]
    schedule = atrous_schedule([block.stride for block, _ in units], output_stride)
    conv1_1, conv1_2 = xception_stem_scopes(variant)
    x = conv_bn(w, x, conv1_1, BACKBONE_BN_EPS, stride=2, padding="explicit", activation=tf.nn.relu)
    x = conv_bn(w, x, conv1_2, BACKBONE_BN_EPS, padding="explicit", activation=tf.nn.relu)
    low_scope, low = xception_low_level_scope(variant), None
    for (block, unit), (stride, rate) in zip(units, schedule):
        scope = xception_unit_scope(variant, block, unit)
        x, mid = xception_module(w, x, scope, block, stride=stride, rate=rate)
        if low_scope.startswith(scope + "/"):
            low = mid
    return x, low


# --- MobileNet-v2 -----------------------------------------------------------------------------

def inverted_residual(w: WeightReader, x: tf.Tensor, k: int, *, stride: int, rate: int) -> tf.Tensor:
    """``expanded_conv[_k]``: [expand 1×1 → BN → ReLU6] → depthwise 3×3 → BN → ReLU6 →
    project 1×1 → BN; + input when stride 1 and channels match. Plain SAME padding."""
    scopes = mobilenet_v2_unit_scopes(k)
    y = x
    if "expand" in scopes:
        y = conv_bn(w, y, scopes["expand"], BACKBONE_BN_EPS, activation=tf.nn.relu6)
    y = depthwise_bn(w, y, scopes["depthwise"], BACKBONE_BN_EPS, stride=stride, rate=rate,
                     activation=tf.nn.relu6)
    y = conv_bn(w, y, scopes["project"], BACKBONE_BN_EPS)
    if stride == 1 and int(x.shape[-1]) == int(y.shape[-1]):
        y = y + x
    return y


def mobilenet_v2_features(w: WeightReader, x: tf.Tensor, output_stride: int) -> tf.Tensor:
    """MobileNet-v2 up to expanded_conv_16 (320 ch). At OS 16: expanded_conv_13 runs at stride 1,
    rate 1; expanded_conv_14..16 at rate 2 (the same atrous rule as Xception)."""
    schedule = atrous_schedule([unit[2] for unit in MOBILENET_V2_UNITS], output_stride)
    x = conv_bn(w, x, mobilenet_v2_stem_scope(), BACKBONE_BN_EPS, stride=2, activation=tf.nn.relu6)
    for k, (stride, rate) in enumerate(schedule):
        x = inverted_residual(w, x, k, stride=stride, rate=rate)
    return x


# --- heads ------------------------------------------------------------------------------------

def pooling_branch(w: WeightReader, features: tf.Tensor, scope: str, window) -> tf.Tensor:
    """Average pool (window, stride 1, VALID) → 1×1 conv → BN → ReLU → resize back to the
    feature size with align_corners (image pooling; DPC pyramid pooling)."""
    window = _pair(window)
    size = _spatial(features)
    if window[0] > size[0] or window[1] > size[1]:
        raise ValueError(f"{scope}: pooling window {window} exceeds the feature map {size}; "
                         "the image must be at least the crop size")
    y = tf.nn.avg_pool2d(features, ksize=list(window), strides=1, padding="VALID")
    y = conv_bn(w, y, scope, HEAD_BN_EPS, activation=tf.nn.relu)
    return resize_bilinear(y, size)


def image_pooling_window(crop_size, output_stride: int) -> tuple[int, int]:
    """SPEC §7: "(crop−1)//OS + 1 per axis"."""
    return tuple(scale_dimension(c, 1.0 / output_stride) for c in _pair(crop_size))


def aspp(w: WeightReader, features: tf.Tensor, crop_size, output_stride: int,
         atrous_rates: Sequence[int], *, separable: bool = True) -> tf.Tensor:
    """image_pooling, aspp0 (1×1), aspp1..n (3×3 atrous, separable by default), concat,
    concat_projection — each conv → BN (eps 1e-5) → ReLU. Dropout: identity at inference."""
    branches = [pooling_branch(w, features, IMAGE_POOLING_SCOPE, image_pooling_window(crop_size, output_stride)),
                conv_bn(w, features, aspp_scope(0), HEAD_BN_EPS, activation=tf.nn.relu)]
    for i, rate in enumerate(atrous_rates, 1):
        if separable:
            branches.append(split_separable_bn(w, features, aspp_scope(i), HEAD_BN_EPS, rate=rate,
                                               activation=tf.nn.relu))
        else:
            branches.append(conv_bn(w, features, aspp_scope(i), HEAD_BN_EPS, rate=rate, activation=tf.nn.relu))
    return conv_bn(w, tf.concat(branches, axis=3), CONCAT_PROJECTION_SCOPE, HEAD_BN_EPS, activation=tf.nn.relu)


def dpc_rate_multiplier(output_stride: int) -> int:
    """SPEC §3.1: "Rates are multiplied by 16 / output_stride"."""
    if 16 % output_stride:
        raise ValueError(f"DPC rates need 16 / output_stride to be whole, got OS {output_stride}")
    return 16 // output_stride


def dpc(w: WeightReader, features: tf.Tensor, crop_size, output_stride: int,
        config: Sequence[Mapping] = TOP1_CITYSCAPES_DPC) -> tf.Tensor:
    """The dense prediction cell of a SPEC §3.2 JSON config, then
    ``meta_architecture/concat_projection`` (1×1 → BN → ReLU; dropout identity).

    3×3 ``conv`` branches: separable with rate [r_h, r_w]·16/OS, BN + ReLU after depthwise and
    pointwise; 1×1 ``conv``: conv → BN → ReLU; ``pyramid_pooling``: kernel
    int((crop − 1)/(OS·g) + 1) per axis (SPEC §3.1) → :func:`pooling_branch`.
    """
    multiplier = dpc_rate_multiplier(output_stride)
    outputs: list[tf.Tensor] = []
    for i, branch in enumerate(config):
        x = features if branch["input"] < 0 else outputs[branch["input"]]
        scope = dpc_branch_scope(i)
        if branch["op"] == "pyramid_pooling":
            grid = _pair(branch["grid_size"])
            window = tuple(scale_dimension(c, 1.0 / (output_stride * g)) for c, g in zip(_pair(crop_size), grid))
            outputs.append(pooling_branch(w, x, scope, window))
        elif _dpc_is_separable(branch):
            rate = [r * multiplier for r in _pair(branch["rate"])]
            outputs.append(split_separable_bn(w, x, scope, HEAD_BN_EPS, rate=rate, activation=tf.nn.relu))
        else:
            outputs.append(conv_bn(w, x, scope, HEAD_BN_EPS, activation=tf.nn.relu))
    return conv_bn(w, tf.concat(outputs, axis=3), dpc_projection_scope(), HEAD_BN_EPS, activation=tf.nn.relu)


def decoder(w: WeightReader, features: tf.Tensor, low_level: tf.Tensor, *, separable: bool = True) -> tf.Tensor:
    """DeepLabv3+ decoder: 48-ch 1×1 projection of the OS-4 feature, both resized (align
    corners) to the low-level size, concat (features first, 304 ch), two 3×3 convs of 256,
    each conv → BN (eps 1e-5) → ReLU (separable: after depthwise and pointwise).

    AMBIGUITY: the official resize target is scale_dimension(crop, 1/4); here it is the
    low-level feature's own size, the same number whenever the image is the crop (both are
    ceil(H/4) for the stride-2 paddings used here).
    """
    size = _spatial(low_level)
    projected = conv_bn(w, low_level, DECODER_PROJECTION_SCOPE, HEAD_BN_EPS, activation=tf.nn.relu)
    x = tf.concat([resize_bilinear(features, size), resize_bilinear(projected, size)], axis=3)
    for i in range(2):
        if separable:
            x = split_separable_bn(w, x, decoder_separable_scope(i), HEAD_BN_EPS, activation=tf.nn.relu)
        else:
            x = conv_bn(w, x, decoder_regular_scope(i + 1), HEAD_BN_EPS, activation=tf.nn.relu)
    return x


def logits_layer(w: WeightReader, x: tf.Tensor) -> tf.Tensor:
    """``logits/semantic``: 1×1 conv + bias."""
    return conv(w, x, LOGITS_SCOPE) + w[biases_name(LOGITS_SCOPE)]


def official_logits(weights: Mapping[str, np.ndarray], images, model: str = "xception71_dpc",
                    output_stride: int = 16, crop_size=None, num_classes: int | None = None, *,
                    atrous_rates: Sequence[int] | None = None,
                    dpc_config: Sequence[Mapping] = TOP1_CITYSCAPES_DPC,
                    used: set | None = None) -> tf.Tensor:
    """Logits [N, H, W, num_classes] of the official DeepLab graph ``model`` (:data:`MODELS`)
    on ``images`` (uint8 or float pixels in [0, 255], [N, H, W, 3]), inference mode.

    ``crop_size`` (default: the image size) sets the image-pooling and pyramid-pooling windows,
    as the official ``image_pooling_crop_size`` (which defaults to the crop): at image == crop
    image pooling is a global mean. Resizes go back to the actual feature sizes, equal to the
    official scale_dimension(crop, 1/OS) when image == crop (the official graph is only used
    with images padded to the crop).
    ``atrous_rates``: ASPP rates (default 6, 12, 18 ×16/OS; ignored by models without atrous
    branches). ``used``: a set that receives every variable name read.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    cfg = MODELS[model]
    w = WeightReader(weights, used)
    x = preprocess(images)
    if x.shape.rank != 4 or int(x.shape[-1]) != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {x.shape}")
    image_size = _spatial(x)
    crop_size = image_size if crop_size is None else _pair(crop_size)

    if cfg.backbone == "mobilenet_v2":
        features, low_level = mobilenet_v2_features(w, x, output_stride), None
    else:
        features, low_level = xception_features(w, x, cfg.backbone, output_stride)

    if cfg.context == "dpc":
        features = dpc(w, features, crop_size, output_stride, dpc_config)
    else:
        if atrous_rates is None:
            atrous_rates = [r * 16 // output_stride for r in ASPP_RATES_OS16]
        atrous_rates = list(atrous_rates)[:cfg.atrous_branches] if cfg.atrous_branches else []
        features = aspp(w, features, crop_size, output_stride, atrous_rates)

    if cfg.decoder:
        features = decoder(w, features, low_level)
    logits = resize_bilinear(logits_layer(w, features), image_size)
    if num_classes is not None and int(logits.shape[-1]) != num_classes:
        raise ValueError(f"weights have {int(logits.shape[-1])} classes, num_classes={num_classes}")
    return logits
