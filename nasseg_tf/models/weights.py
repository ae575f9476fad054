"""Loading weights into zoo models: official TF1 DeepLab checkpoints, strictly.

:func:`load_official_checkpoint` reads a checkpoint of the official TF1 release (a
``model.ckpt-N`` prefix or a folder holding one; ``tf.train.load_checkpoint``), maps
every weight of the model to its official name (:mod:`nasseg_tf.models.official`) and
assigns them — strictly: every weight must be found with its exact shape, or nothing is
assigned and the error lists the missing and the mismatched names (the first ten and a
count). Optimizer slots (``*/Momentum``, ``*/Adam*``, ...) and ``global_step`` are not
model content and are skipped; where a variable has an ``ExponentialMovingAverage``
shadow (slim's ImageNet MobileNet-v2), the shadow is the value loaded. Checkpoint
variables left unused are reported.

Two scopes:

* ``"model"`` — a whole model (backbone, ASPP / DPC, decoder, logits);
* ``"backbone"`` — an ImageNet checkpoint (``xception_65``, ``xception_71``, slim
  ``mobilenet_v2``) into the model's backbone; the heads keep their initial weights.

``"auto"`` picks ``"model"`` when the checkpoint holds the model's logits or heads,
else ``"backbone"``. A class-count mismatch of the logits is reported with the fix:
rebuild with the checkpoint's class count, or ``skip_logits=True`` to fine-tune from
the rest (the logits keep their initial weights).

TensorFlow is imported only when a checkpoint is read (models import without it).
"""

import os

import numpy as np

from nasseg_tf.models.official import is_head, official_names

#: Name endings of checkpoint variables that are not model content.
_NOT_MODEL = ("/Momentum", "/Adam", "/Adam_1", "/RMSProp", "/RMSProp_1", "/Adagrad",
              "/ExponentialMovingAverage")
_SHADOW = "/ExponentialMovingAverage"
_LIMIT = 10


class CheckpointImportError(ValueError):
    """A checkpoint does not fit the model; the message names what is wrong."""


def _listing(names, what):
    """``"<n> <what>: a, b, ... (and k more)"`` (names in the order given)."""
    more = f" (and {len(names) - _LIMIT} more)" if len(names) > _LIMIT else ""
    return f"{len(names)} {what}: {', '.join(names[:_LIMIT])}{more}"


def checkpoint_prefix(path):
    """The checkpoint prefix of ``path`` (a prefix, or a folder holding a checkpoint).

    Raises:
      FileNotFoundError: naming ``path`` when there is no checkpoint there.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            indexes = sorted(tf.io.gfile.glob(os.path.join(path, "*.index")))
            if len(indexes) == 1:
                latest = indexes[0][:-len(".index")]
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in {path} (expected model.ckpt-N.index "
                                    "and its .data files, or a 'checkpoint' file)")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"no checkpoint at {path} ({path}.index does not exist)")
    return path


def read_checkpoint(path):
    """``(prefix, {name: shape})`` of a checkpoint; an unreadable one is a clear error."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointImportError(f"cannot read the checkpoint {prefix}: "
                                    f"{getattr(e, 'message', e)}") from None
    return prefix, reader, shapes


def _model_content(shapes):
    """The checkpoint's model variables (no optimizer slots, shadows, step)."""
    return {name for name in shapes if name != "global_step"
            and not any(name.endswith(end) or f"{end}/" in name for end in _NOT_MODEL)}


def plan_import(model, shapes, scope="auto", skip_logits=False):
    """Which checkpoint variable goes into which model weight (no reading, no writing).

    Args:
      model: a zoo model.
      shapes: the checkpoint's ``{name: shape}``.
      scope: ``"model"``, ``"backbone"`` or ``"auto"`` (see the module docstring).
      skip_logits: leave the logits out (fine-tuning to another class count).

    Returns:
      dict with ``assign`` (``[(variable, checkpoint name, transform)]``), ``scope``,
      ``unused`` (checkpoint model variables not loaded) and ``skipped`` (model weights
      deliberately not loaded).

    Raises:
      CheckpointImportError: listing missing and mismatched names.
    """
    variables = {v.path: v for v in model.variables}
    names = official_names([(path, tuple(v.shape)) for path, v in variables.items()])
    content = _model_content(shapes)
    if scope == "auto":
        heads = {n for n, _ in names.values() if is_head(n)}
        scope = "model" if heads & content else "backbone"
    if scope not in ("model", "backbone"):
        raise ValueError(f"scope must be 'model', 'backbone' or 'auto', got {scope!r}")
    assign, missing, mismatched, skipped = [], [], [], []
    for path, (name, transform) in names.items():
        if (scope == "backbone" and is_head(name)) or (
                skip_logits and name.startswith("logits/")):
            skipped.append(path)
            continue
        source = name + _SHADOW if name + _SHADOW in shapes else name
        if source not in shapes:
            missing.append(name)
            continue
        want = tuple(variables[path].shape)
        got = tuple(transform(np.zeros(shapes[source], np.float32)).shape)
        if got != want:
            mismatched.append(f"{name} {list(shapes[source])} (model {list(want)})")
            continue
        assign.append((variables[path], source, transform))
    logits = [m for m in mismatched if m.startswith("logits/semantic/weights")]
    if logits:
        raise CheckpointImportError(
            f"the checkpoint's logits do not fit the model's classes: {logits[0]}. "
            "Build the model with the checkpoint's class count, or skip the logits "
            "(skip_logits=True, --skip_logits) to fine-tune from the rest")
    if missing or mismatched:
        parts = [_listing(missing, "missing")] if missing else []
        parts += [_listing(mismatched, "with another shape")] if mismatched else []
        scopes = list(dict.fromkeys("/".join(n.split("/")[:2]) for n in missing))[:3]
        hint = f" (first missing scopes: {', '.join(scopes)})" if scopes else ""
        raise CheckpointImportError(
            f"the checkpoint does not fit {model.name} ({scope} scope): "
            f"{'; '.join(parts)}{hint}")
    used = {name for _, name, _ in assign}
    used |= {name[:-len(_SHADOW)] for name in used if name.endswith(_SHADOW)}
    return {"assign": assign, "scope": scope, "skipped": skipped,
            "unused": sorted(content - used)}  # missing/mismatched: in the model's order


def load_official_checkpoint(model, path, scope="auto", skip_logits=False):
    """Loads an official TF1 DeepLab checkpoint into ``model`` (see the module docstring).

    Returns:
      dict: ``checkpoint`` (the prefix), ``scope``, ``loaded`` (count), ``skipped``
      (model weights left as they were) and ``unused`` (checkpoint variables not loaded).
    """
    prefix, reader, shapes = read_checkpoint(path)
    plan = plan_import(model, shapes, scope, skip_logits)
    values = []
    for variable, name, transform in plan["assign"]:
        try:
            tensor = reader.get_tensor(name)
        except Exception as e:  # pylint: disable=broad-except  (a truncated .data file)
            raise CheckpointImportError(f"cannot read {name} from {prefix}: "
                                        f"{getattr(e, 'message', e)}") from None
        values.append((variable, transform(np.asarray(tensor))))
    for variable, value in values:  # read everything first: all or nothing
        variable.assign(value.astype(variable.dtype))
    return {"checkpoint": prefix, "scope": plan["scope"], "loaded": len(values),
            "skipped": plan["skipped"], "unused": plan["unused"]}


# --------------------------------------------------------------------------------------
# Keras' ImageNet MobileNet-v2 (keras.applications) into our MobileNet-v2 backbone.


def _keras_mobilenet_v2_name(path):
    """Keras application variable path of one of our MobileNet-v2 backbone weights."""
    import re  # pylint: disable=import-outside-toplevel

    match = re.fullmatch(r"stem_(conv|bn)/(\w+)", path)
    if match:
        return f"{'Conv1' if match[1] == 'conv' else 'bn_Conv1'}/{match[2]}"
    match = re.fullmatch(r"block(\d+)_(expand|depthwise|project)(_bn)?/(\w+)", path)
    if not match:
        return None
    block, layer, bn, var = match.groups()
    unit = "expanded_conv" if block == "0" else f"block_{block}"
    return f"{unit}_{layer}{'_BN' if bn else ''}/{var}"


def load_keras_mobilenet_v2(model, keras_model):
    """Copies a ``keras.applications.MobileNetV2`` (``include_top=False``) into the
    MobileNet-v2 backbone of ``model``; strict like :func:`plan_import`.

    The two graphs share every backbone weight (Keras' ``Conv_1``, the 1280-channel
    last conv, is left unused: DeepLab stops at the 320-channel block). They differ in
    what they compute: Keras' network has output stride 32 where ours runs its last
    blocks atrous at 8 or 16 (the weights are the same, the receptive fields are not),
    and Keras pads before each stride-2 conv with ``correct_pad`` (one pixel at the end
    for an even input size, one on each side for an odd one), which is TensorFlow's
    'SAME' padding — the official DeepLab MobileNet-v2's. Returns the import report.
    """
    ours = {v.path: v for v in model.variables}
    theirs = {v.path: v for v in keras_model.variables}
    assign, missing, mismatched = [], [], []
    for path, variable in ours.items():
        name = _keras_mobilenet_v2_name(path)
        if name is None:
            continue
        if name not in theirs:
            missing.append(name)
        elif tuple(theirs[name].shape) != tuple(variable.shape):
            mismatched.append(f"{name} {list(theirs[name].shape)} "
                              f"(model {list(variable.shape)})")
        else:
            assign.append((variable, theirs[name]))
    if not assign or missing or mismatched:
        parts = [_listing(missing, "missing")] if missing else []
        parts += [_listing(mismatched, "with another shape")] if mismatched else []
        raise CheckpointImportError(
            f"the Keras MobileNetV2 does not fit {model.name}'s backbone: "
            f"{'; '.join(parts) or 'the model has no MobileNet-v2 backbone'} "
            "(same depth multiplier needed)")
    for variable, source in assign:
        variable.assign(source.value)
    used = {v.path for _, v in assign}
    return {"loaded": len(assign), "unused": sorted(set(theirs) - used)}
