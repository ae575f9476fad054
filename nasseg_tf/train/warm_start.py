"""Warm starts: a model's initial weights from another run, a saved model or an
official checkpoint (like deeplab2's ``initial_checkpoint``).

:func:`warm_start` takes, in order of detection,

* a checkpoint of this package's training loop (a ``ckpt-N`` prefix or the run's
  ``checkpoints/`` folder or the run folder itself): weights keyed by variable path
  under ``model`` (:mod:`~nasseg_tf.train.checkpointing`);
* a ``.keras`` file (a saved zoo model): weights matched by variable path;
* an official TF1 DeepLab checkpoint: weights matched by their official names
  (:mod:`nasseg_tf.models.official`), moving-average shadows preferred.

Unlike a resume, a warm start may load a subset: a weight of the model that the source
lacks keeps its initial value (a MobileNet-v2 + ASPP backbone into MobileNet-v2 + DPC),
and ``exclude`` patterns (regular expressions on our variable paths, e.g. ``logits/.*``
when the classes differ) leave weights out on purpose. A weight found with another
shape is an error naming it (exclude it, or fix the source); so is a source that fits
no weight at all. The training run applies it only when its model_dir holds no
checkpoint yet: once it does, the run resumes from there (a killed warm-started run
resumes, it does not restart).
"""

import os
import re

import numpy as np
import tensorflow as tf

from nasseg_tf.models import official
from nasseg_tf.models.weights import CheckpointImportError, read_checkpoint
from nasseg_tf.train.checkpointing import variables_by_path

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _unescape(key):
    """A tf.train.Checkpoint object-path component back to the name it escapes."""
    out, i = [], 0
    while i < len(key):
        if key[i] == "." and i + 1 < len(key):
            out.append("/" if key[i + 1] == "S" else key[i + 1])
            i += 2
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def _training_checkpoint(path):
    """The prefix of a training-loop checkpoint at ``path``, or None."""
    candidates = [path, os.path.join(path, "checkpoints")]
    for candidate in candidates:
        if tf.io.gfile.isdir(candidate):
            latest = tf.train.latest_checkpoint(candidate)
            if latest:
                return latest
        elif tf.io.gfile.exists(candidate + ".index"):
            return candidate
    return None


def _source_values(path):
    """``(kind, {key: getter}, {key: shape}, describe)`` of a warm-start source."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        import keras  # pylint: disable=import-outside-toplevel

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"initial checkpoint not found: {path}")
        saved = keras.saving.load_model(path, compile=False)
        variables = variables_by_path(saved.variables)
        return ("keras", {k: v.numpy for k, v in variables.items()},
                {k: tuple(v.shape) for k, v in variables.items()}, path)
    prefix = _training_checkpoint(path)
    if prefix is None:
        raise FileNotFoundError(f"initial checkpoint not found: {path} (a .keras file, "
                                "a run folder or checkpoint prefix, or an official "
                                "model.ckpt prefix or folder)")
    prefix, reader, shapes = read_checkpoint(prefix)
    ours = {_unescape(k[len("model/"):-len(_VALUE)]): k for k in shapes
            if k.startswith("model/") and k.endswith(_VALUE)}
    if ours:
        return ("checkpoint", {p: (lambda k=k: reader.get_tensor(k)) for p, k in ours.items()},
                {p: tuple(shapes[k]) for p, k in ours.items()}, prefix)
    return ("official", reader, shapes, prefix)


def warm_start(model, path, exclude=(), require_all=False):
    """Assigns ``model`` its initial weights from ``path`` (see the module docstring).

    Args:
      model: a built Keras model.
      path: a ``.keras`` file, a training run / checkpoint, or an official checkpoint.
      exclude: regular expressions; weights whose variable path matches one (with
        ``re.match``) are not loaded.
      require_all: every (not excluded) weight must be in the source (the DPC proxy's
        backbone: a partly initialised feature extractor would be a silent mistake).

    Returns:
      dict: ``source``, ``kind`` (``checkpoint`` | ``keras`` | ``official``),
      ``loaded``, ``excluded`` and ``not_in_source`` (lists of variable paths).

    Raises:
      CheckpointImportError: a weight found with another shape (named), or nothing of
        the source fits the model, or ``require_all`` and weights are missing.
      FileNotFoundError: nothing at ``path``.
    """
    patterns = [re.compile(p) for p in exclude]
    variables = {p: v for p, v in variables_by_path(model.variables).items()
                 if not p.startswith("seed_generator_states/")}
    excluded = [p for p in variables if any(r.match(p) for r in patterns)]
    wanted = {p: v for p, v in variables.items() if p not in excluded}
    kind, getters, shapes, source = _source_values(path)
    if kind == "official":
        names = official.official_names([(p, tuple(v.shape)) for p, v in wanted.items()])
        reader = getters
        getters, keyed = {}, {}
        for p, (name, transform) in names.items():
            key = name + "/ExponentialMovingAverage"
            key = key if key in shapes else name
            if key in shapes:
                keyed[p] = tuple(transform(np.zeros(shapes[key], np.float32)).shape)
                getters[p] = (lambda key=key, transform=transform:
                              transform(np.asarray(reader.get_tensor(key))))
        shapes = keyed
    mismatched = [f"{p} {list(shapes[p])} (model {list(v.shape)})"
                  for p, v in wanted.items() if p in shapes
                  and tuple(shapes[p]) != tuple(v.shape)]
    if mismatched:
        raise CheckpointImportError(
            f"initial checkpoint {source}: {len(mismatched)} weights have another shape: "
            f"{', '.join(mismatched[:10])}; leave them out with Training.init_exclude "
            "(e.g. ['logits/.*'] when the classes differ)")
    loaded = [p for p in wanted if p in shapes]
    missing = [p for p in wanted if p not in shapes]
    if not loaded:
        raise CheckpointImportError(f"initial checkpoint {source} ({kind}) holds none of "
                                    f"{model.name}'s weights")
    if require_all and missing:
        raise CheckpointImportError(
            f"{source} lacks {len(missing)} of {model.name}'s weights: "
            f"{', '.join(missing[:10])}")
    values = [(wanted[p], np.asarray(getters[p]())) for p in loaded]
    for variable, value in values:  # everything read first: all or nothing
        variable.assign(value.astype(variable.dtype))
    return {"source": source, "kind": kind, "loaded": loaded, "excluded": excluded,
            "not_in_source": missing}
