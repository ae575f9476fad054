"""The official TF1 DeepLab names of our zoo models' weights (SPEC §7).

Researchers hold checkpoints of the official TF1 DeepLab release (slim variable names
such as ``xception_71/entry_flow/block1/unit_1/xception_module/separable_conv1_depthwise/
depthwise_weights``); :func:`official_names` says, for every weight of one of our zoo
models, which official variable holds it and how to turn that tensor into ours. It reads
only the model's variable paths (stable sub-layer names are part of our checkpoint
contract), so it works for every size and class count of a family:

* backbones — aligned Xception-65/71 (``xception_65`` / ``xception_71``), MobileNet-v2
  (``MobilenetV2``; DeepLab stops at ``expanded_conv_16``), Auto-DeepLab's derived
  network (``hnasnet``: stem, cells, ``comb_iter_<i>/{left,right}`` ops);
* heads — ASPP (``image_pooling``, ``aspp0``, ``aspp<i>`` regular or
  ``aspp<i>_{depthwise,pointwise}`` separable, ``concat_projection``), the Dense
  Prediction Cell (``meta_architecture/branch<i>...``, ``concat_projection``), the
  DeepLabv3+ decoder (``decoder/feature_projection0``; separable
  ``decoder_conv<i>_{depthwise,pointwise}`` or regular ``decoder_conv0/decoder_conv0_<j>``)
  and the logits (``logits/semantic``).

Slim conventions (SPEC §7): a conv scope S holds ``S/weights`` (our Conv2D kernel, same
layout) and, when a batch norm follows, ``S/BatchNorm/{gamma,beta,moving_mean,
moving_variance}``; a depthwise conv ``S/depthwise_weights`` (our DepthwiseConv2D kernel,
``[kh, kw, in, 1]``); biases only on the logits. Auto-DeepLab's cells name their batch
norms as scopes of their own (``bn_sep_3x3_1/gamma``, ``beginning_bn/gamma``).

**One transform.** The official ASPP concatenates its branches image pooling first; ours
puts it last (the order trained models of this package have), so the projection's input
rows are rotated on import (:func:`_rotate_rows`).
"""

import re

import numpy as np

BN_NAMES = {"gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean",
            "moving_variance": "moving_variance"}


class NoOfficialName(ValueError):
    """A weight of the model has no official counterpart (an op the release lacks)."""


def _identity(tensor):
    return tensor


def _rotate_rows(tail):
    """Official concat ``[image_pooling, rest]`` → ours ``[rest, image_pooling]`` on the
    input-channel axis (2) of a 1×1 kernel, ``tail`` = image pooling's channels."""
    def transform(tensor):
        return np.concatenate([tensor[:, :, tail:], tensor[:, :, :tail]], axis=2)
    return transform


def _conv(scope, leaf, bn_scope=None):
    """Official name of a ConvBN leaf (``conv/kernel``, ``bn/gamma``, ...)."""
    kind, var = leaf.split("/")
    if kind in ("conv", "pointwise"):
        return f"{scope}/weights" if var == "kernel" else f"{scope}/biases"
    if kind == "depthwise":
        return f"{scope}/depthwise_weights"
    if kind in ("bn", "depthwise_bn"):
        return f"{bn_scope or scope + '/BatchNorm'}/{BN_NAMES[var]}"
    raise NoOfficialName(f"{scope}: unexpected leaf {leaf!r}")


def _separable(scope, leaf):
    """A separable ConvBN with BN after both steps → ``S_depthwise`` and ``S_pointwise``."""
    kind = leaf.split("/")[0]
    part = "depthwise" if kind in ("depthwise", "depthwise_bn") else "pointwise"
    return _conv(f"{scope}_{part}", leaf)


# --------------------------------------------------------------------------------------
# Backbones.


def _xception(path, depth):
    root = f"xception_{depth}"
    match = re.fullmatch(r"entry_conv1_([12])/(\w+/\w+)", path)
    if match:
        return _conv(f"{root}/entry_flow/conv1_{match[1]}", match[2])
    match = re.fullmatch(r"(entry|middle|exit)_block(\d+)_(sep(\d)|shortcut)/(\w+/\w+)",
                         path)
    if not match:
        return None
    flow, block, which, sep, leaf = match.groups()
    unit = f"block{block}/unit_1" if flow != "middle" else f"block1/unit_{block}"
    module = f"{root}/{flow}_flow/{unit}/xception_module"
    if which == "shortcut":
        return _conv(f"{module}/shortcut", leaf)
    return _separable(f"{module}/separable_conv{sep}", leaf)


_MOBILENET_LAYERS = {"expand": "expand", "depthwise": "depthwise", "project": "project"}


def _mobilenet_v2(path):
    root = "MobilenetV2"
    match = re.fullmatch(r"stem_(conv|bn)/(\w+)", path)
    if match:
        return _conv(f"{root}/Conv", f"{match[1]}/{match[2]}")
    match = re.fullmatch(r"block(\d+)_(expand|depthwise|project)(_bn)?/(\w+)", path)
    if not match:
        return None
    block, layer, bn, var = match.groups()
    unit = "expanded_conv" if block == "0" else f"expanded_conv_{block}"
    kind = "bn" if bn else ("depthwise" if layer == "depthwise" else "conv")
    return _conv(f"{root}/{unit}/{_MOBILENET_LAYERS[layer]}", f"{kind}/{var}")


_HNASNET_OPS = {("sep", 3): "separable_3x3", ("sep", 5): "separable_5x5"}


def _hnasnet(path, shapes):
    root = "hnasnet"
    match = re.fullmatch(r"stem_conv(\d)/(conv|bn)/(\w+)", path)
    if match:
        index, kind, var = match.groups()
        return _conv(f"{root}/conv{index}", f"{kind}/{var}",
                     bn_scope=f"{root}/conv{index}_bn")
    match = re.fullmatch(r"cell_(\d+)/(prev_1x1|prev_prev_1x1)/(conv|bn)/(\w+)", path)
    if match:
        cell, which, kind, var = match.groups()
        conv, bn = (("1x1", "beginning_bn") if which == "prev_1x1"
                    else ("prev_1x1", "prev_bn"))
        return _conv(f"{root}/cell_{cell}/{conv}", f"{kind}/{var}",
                     bn_scope=f"{root}/cell_{cell}/{bn}")
    match = re.fullmatch(r"cell_(\d+)/block(\d+)_(left|right)/(.+)", path)
    if not match:
        return None
    cell, block, side, rest = match.groups()
    scope = f"{root}/cell_{cell}/comb_iter_{block}/{side}"
    sep = re.fullmatch(r"sep(\d)/(depthwise|pointwise|bn)/(\w+)", rest)
    if sep:
        repeat, kind, var = sep.groups()
        kernel = shapes.get(f"cell_{cell}/block{block}_{side}/sep{repeat}/depthwise/kernel")
        name = f"separable_{kernel[0]}x{kernel[1]}_{int(repeat) + 1}"
        if kind == "depthwise":
            return f"{scope}/{name}/depthwise_weights"
        if kind == "pointwise":
            return f"{scope}/{name}/pointwise_weights"
        return f"{scope}/bn_sep_{kernel[0]}x{kernel[1]}_{int(repeat) + 1}/{BN_NAMES[var]}"
    atrous = re.fullmatch(r"conv/(conv|bn)/(\w+)", rest)
    if atrous:
        kind, var = atrous.groups()
        kernel = shapes.get(f"cell_{cell}/block{block}_{side}/conv/conv/kernel")
        k = f"{kernel[0]}x{kernel[1]}"
        return _conv(f"{scope}/atrous_{k}", f"{kind}/{var}",
                     bn_scope=f"{scope}/bn_atr_{k}")
    raise NoOfficialName(
        f"{path}: the official Auto-DeepLab release names only separable and atrous "
        "ops; this cell has another op (pool or skip with a reduction)")


# --------------------------------------------------------------------------------------
# Heads.


def _aspp(path, atrous_order, separable):
    match = re.fullmatch(r"context/(conv_1x1|atrous_\d+|image_pooling/conv|projection)/"
                         r"(\w+/\w+)", path)
    if not match:
        return None
    branch, leaf = match.groups()
    if branch == "conv_1x1":
        return _conv("aspp0", leaf)
    if branch == "image_pooling/conv":
        return _conv("image_pooling", leaf)
    if branch == "projection":
        return _conv("concat_projection", leaf)
    index = atrous_order.index(branch) + 1
    return (_separable(f"aspp{index}", leaf) if separable
            else _conv(f"aspp{index}", leaf))


def _dpc(path, separable_branches):
    match = re.fullmatch(r"context/(branch_(\d+)|projection)/(.+)", path)
    if not match:
        return None
    _, index, leaf = match.groups()
    if index is None:
        return _conv("meta_architecture/concat_projection", leaf)
    scope = f"meta_architecture/branch{index}"
    if int(index) in separable_branches:
        return _separable(scope, leaf)
    if leaf.startswith("conv/") and leaf.count("/") == 2:  # pyramid pooling's ConvBN
        leaf = leaf[len("conv/"):]
    return _conv(scope, leaf)


def _decoder(path, separable):
    match = re.fullmatch(r"decoder/(low_level_projection|conv(\d+))/(\w+/\w+)", path)
    if not match:
        return None
    layer, index, leaf = match.groups()
    if layer == "low_level_projection":
        return _conv("decoder/feature_projection0", leaf)
    if separable:
        return _separable(f"decoder/decoder_conv{index}", leaf)
    return _conv(f"decoder/decoder_conv0/decoder_conv0_{int(index) + 1}", leaf)


def _logits(path):
    match = re.fullmatch(r"logits/(kernel|bias)", path)
    if not match:
        return None
    return "logits/semantic/" + ("weights" if match[1] == "kernel" else "biases")


# --------------------------------------------------------------------------------------
# The model.


def describe(paths):
    """What the official naming needs to know of a model, read from its variable paths."""
    shapes = dict(paths)
    names = list(shapes)
    if any(n.startswith("entry_conv1_1/") for n in names):
        entry = {m[1] for m in (re.match(r"entry_block(\d+)_", n) for n in names) if m}
        backbone = {3: "xception_65", 5: "xception_71"}.get(len(entry))
    elif any(n.startswith("block0_depthwise/") for n in names):
        backbone = "mobilenet_v2"
    elif any(n.startswith("stem_conv0/") for n in names):
        backbone = "hnasnet"
    else:
        backbone = None
    if any(n.startswith("context/branch_") for n in names):
        context = "dpc"
    elif any(n.startswith("context/") for n in names):
        context = "aspp"
    else:
        context = None
    atrous = sorted({n.split("/")[1] for n in names if n.startswith("context/atrous_")},
                    key=lambda b: int(b.split("_")[1]))
    separable_branches = {int(m[1]) for m in (
        re.match(r"context/branch_(\d+)/depthwise/", n) for n in names) if m}
    return {
        "backbone": backbone, "context": context, "atrous": atrous,
        "separable_branches": separable_branches,
        "aspp_separable": any(n.startswith("context/atrous_") and "/depthwise/" in n
                              for n in names),
        "image_pooling": any(n.startswith("context/image_pooling/") for n in names),
        "decoder": any(n.startswith("decoder/") for n in names),
        "decoder_separable": any(n.startswith("decoder/conv0/depthwise") for n in names),
        "shapes": shapes,
    }


def _skipped(path):
    """Weights that are not checkpoint content (random-seed states)."""
    return path.endswith("seed_generator_state") or path.endswith("training_progress")


def official_names(paths):
    """``{our variable path: (official name, transform)}`` for a zoo model.

    Args:
      paths: ``[(variable path, shape), ...]`` of the model (``[(v.path, v.shape) for v
        in model.variables]``).

    Returns:
      The mapping for every weight; seed-generator states and schedule variables are
      left out (they are not in any checkpoint).

    Raises:
      NoOfficialName: naming the first weight that has no official counterpart.
    """
    info = describe(paths)
    backbone = info["backbone"] or ""
    depth = int(backbone.split("_")[1]) if backbone.startswith("xception_") else None
    feature_filters = None
    if info["image_pooling"]:
        feature_filters = info["shapes"]["context/image_pooling/conv/conv/kernel"][-1]
    out = {}
    for path, _ in paths:
        if _skipped(path):
            continue
        name, transform = None, _identity
        if path.startswith("context/") and info["context"] == "aspp":
            name = _aspp(path, info["atrous"], info["aspp_separable"])
            if path == "context/projection/conv/kernel" and feature_filters:
                transform = _rotate_rows(feature_filters)
        elif path.startswith("context/") and info["context"] == "dpc":
            name = _dpc(path, info["separable_branches"])
        elif path.startswith("decoder/"):
            name = _decoder(path, info["decoder_separable"])
        elif path.startswith("logits/"):
            name = _logits(path)
        elif info["backbone"] == "mobilenet_v2":
            name = _mobilenet_v2(path)
        elif info["backbone"] == "hnasnet":
            name = _hnasnet(path, info["shapes"])
        elif depth:
            name = _xception(path, depth)
        if name is None:
            raise NoOfficialName(f"{path}: no official DeepLab name for this weight "
                                 f"(backbone {info['backbone']}, context "
                                 f"{info['context']})")
        out[path] = (name, transform)
    return out


def is_head(official_name):
    """Whether an official name belongs to the heads (not the backbone)."""
    return official_name.split("/")[0] in (
        "aspp0", "image_pooling", "concat_projection", "meta_architecture", "decoder",
        "logits") or re.match(r"aspp\d", official_name) is not None
