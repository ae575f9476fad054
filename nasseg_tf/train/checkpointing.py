"""Checkpoint contents keyed by Keras variable paths, and the architecture they belong to.

``tf.train.Checkpoint(model=keras_model)`` keys weights by layer position
(``_operations/17/...``) and leaves out Keras' random-seed state. Keying by variable path
(``cell_3/block0_left/sep0/depthwise/kernel``) keeps checkpoints readable and valid
across refactors that keep layer names, and includes the dropout seed state, so a
resumed run draws the same random numbers as an uninterrupted one.
"""

import json

import tensorflow as tf


def variables_by_path(variables):
    """``{path: variable}``; raises if two variables share a path.

    Keras names random-seed generators with a process-wide counter
    (``seed_generator_7/seed_generator_state``), so their paths depend on what else the
    process built; they are keyed by their order among the model's seed states instead
    (``seed_generator_states/0``), which only depends on the architecture.
    """
    out = {}
    seeds = 0
    for var in variables:
        path = var.path
        if path.endswith("seed_generator_state"):
            path = f"seed_generator_states/{seeds}"
            seeds += 1
        if path in out:
            raise ValueError(f"two variables share the path {path!r}; give the layers "
                             "unique names")
        out[path] = var
    return out


def checkpoint_items(**objects):
    """``checkpoint_items(model=m, optimizer=o)`` → kwargs for ``tf.train.Checkpoint``."""
    return {name: variables_by_path(obj.variables) for name, obj in objects.items()}


# --------------------------------------------------------------------------------------
# Architecture fingerprint.

#: The checkpoint item holding the architecture description (a JSON string).
ARCHITECTURE_ITEM = "architecture"
_ARCHITECTURE_KEY = f"{ARCHITECTURE_ITEM}/.ATTRIBUTES/VARIABLE_VALUE"


class ArchitectureMismatchError(ValueError):
    """A checkpoint belongs to another architecture; the message names the difference."""


def architecture_json(architecture):
    """The canonical JSON text of an architecture description (sorted keys)."""
    return json.dumps(architecture, sort_keys=True, separators=(",", ":"))


def architecture_variable(architecture):
    """A string variable holding ``architecture`` (a JSON-able dict) for a checkpoint.

    Weights alone cannot tell two architectures apart when they differ only in
    weight-free choices (an edge's input, a pool swapped for a skip connection): the
    checkpoint carries the description and :func:`check_architecture` compares it.
    """
    return tf.Variable(architecture_json(architecture), dtype=tf.string,
                       trainable=False, name=ARCHITECTURE_ITEM)


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, (list, tuple)):
        out = {f"{prefix}.length": len(value)}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def architecture_differences(saved, current):
    """``["<field>: <saved> (checkpoint) vs <current> (this model)", ...]``."""
    saved, current = _flatten(saved), _flatten(current)
    return [f"{key}: {saved.get(key, '(absent)')!r} (checkpoint) vs "
            f"{current.get(key, '(absent)')!r} (this model)"
            for key in sorted(set(saved) | set(current))
            if saved.get(key, "(absent)") != current.get(key, "(absent)")]


def _reader(checkpoint):
    """A reader of the checkpoint with prefix ``checkpoint``.

    Not ``tf.train.load_checkpoint``: it first asks whether the path is a folder, and
    TensorFlow's ``ram://`` file system (the tests' stand-in for ``gs://``) says yes
    for any prefix of a file's name, such as ``ckpt-2`` of ``ckpt-2.index``.
    """
    return tf.compat.v1.train.NewCheckpointReader(checkpoint)


def has_architecture(checkpoint):
    """Whether ``checkpoint`` carries an architecture record (written by this version of
    the package or later)."""
    return _reader(checkpoint).has_tensor(_ARCHITECTURE_KEY)


def check_architecture(checkpoint, architecture):
    """Raises :class:`ArchitectureMismatchError` if ``checkpoint`` records another
    architecture than ``architecture`` (checkpoints without a record pass: they were
    written before fingerprints existed)."""
    reader = _reader(checkpoint)
    if not reader.has_tensor(_ARCHITECTURE_KEY):
        return
    saved = json.loads(reader.get_tensor(_ARCHITECTURE_KEY).decode("utf-8"))
    current = json.loads(architecture_json(architecture))
    differences = architecture_differences(saved, current)
    if differences:
        raise ArchitectureMismatchError(
            f"checkpoint {checkpoint} belongs to another architecture: "
            f"{'; '.join(differences[:10])}"
            f"{f' (and {len(differences) - 10} more)' if len(differences) > 10 else ''}. "
            "Rebuild the model it was trained with, or start in a new folder.")
