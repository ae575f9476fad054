"""What an export says about itself: ``nasseg_metadata.json`` beside the model.

Every export (SavedModel version folder or TFLite folder) carries one metadata file,
so that a client can draw and name the classes without the training run or the
dataset at hand. Its fields (format version 1)::

    {"format": "nasseg_tf.export", "version": 1,
     "model": "mobilenetv2_dpc",            # the Keras model's (zoo) name
     "dataset": "cityscapes",               # registry name or description path; null
     "num_classes": 19, "ignore_label": 255,
     "class_names": ["road", ...], "palette": [[128, 64, 128], ...],
     "generic_classes": false,              # true: class_0.., generated palette
     "input": {"name": "images", "dtype": "uint8", "shape": [null, null, null, 3]},
     "outputs": ["semantic", "probabilities"],
     "max_pixels": 4194304,                 # SavedModel input limit (null: none)
     "source": {"kind": "checkpoint", "path": ".../ckpt-300", "step": 300},
     "export_format": "saved_model"}        # or "tflite" (+ "quantization")

``generic_classes`` is true when the exporter was told no dataset: the names are then
``class_0 .. class_{C-1}`` and the palette :func:`~nasseg_tf.data.datasets.
generated_palette`.
"""

import json
import os

from nasseg_tf import fileio
from nasseg_tf.data.datasets import (DEFAULT_IGNORE_LABEL, DatasetInfo,
                                     default_class_names, generated_palette,
                                     get_dataset_info)

METADATA_FILE = "nasseg_metadata.json"
METADATA_FORMAT = "nasseg_tf.export"
METADATA_VERSION = 1

GENERIC_NOTE = ("no dataset given: classes are named class_0..class_{last} with a "
                "generated palette (pass --dataset to name them)")
"""The one-line note an exporter prints when it writes generic class names."""


def class_metadata(num_classes, info=None, dataset=None):
    """The class fields of the metadata.

    Args:
      num_classes: the model's output channels.
      info: the ``DatasetInfo`` the model was trained on, or None for generic names.
      dataset: what named ``info`` (a registry name or a description path); default
        ``info.name``.

    Raises:
      ValueError: ``info`` has another number of classes than the model.
    """
    if info is None:
        return {"dataset": None, "num_classes": int(num_classes),
                "ignore_label": DEFAULT_IGNORE_LABEL,
                "class_names": list(default_class_names(num_classes)),
                "palette": [list(c) for c in generated_palette(num_classes)],
                "generic_classes": True}
    if info.num_classes != num_classes:
        raise ValueError(f"dataset {info.name!r} has {info.num_classes} classes but the "
                         f"model outputs {num_classes}")
    return {"dataset": dataset or info.name, "num_classes": info.num_classes,
            "ignore_label": info.ignore_label, "class_names": list(info.class_names),
            "palette": [list(c) for c in info.palette], "generic_classes": False}


def dataset_metadata(info, model_name=""):
    """Metadata for :func:`~nasseg_tf.export.export_saved_model` from a
    ``DatasetInfo`` (its class fields and the model's name)."""
    return dict(class_metadata(info.num_classes, info), model=model_name)


def complete_metadata(metadata, num_classes, **fields):
    """``metadata`` with the format header, ``fields`` and generic class fields where
    it names no classes; a given class list must fit ``num_classes``.

    Raises:
      ValueError: the metadata's ``num_classes`` or ``class_names`` do not fit.
    """
    out = {"format": METADATA_FORMAT, "version": METADATA_VERSION}
    given = dict(metadata or {})
    if given.get("class_names") is None:
        given = {**class_metadata(num_classes), **{k: v for k, v in given.items()
                                                 if v is not None}}
    elif len(given["class_names"]) != num_classes or \
            int(given.get("num_classes", num_classes)) != num_classes:
        raise ValueError(f"metadata names {len(given['class_names'])} classes but the "
                         f"model outputs {num_classes}")
    out.update(given)
    out.update(fields)
    return out


def write_metadata(folder, metadata):
    """Writes ``folder/nasseg_metadata.json`` atomically (local or remote)."""
    path = os.path.join(folder, METADATA_FILE)
    fileio.atomic_write_json(path, metadata, indent=2)
    return path


def read_metadata(folder):
    """The metadata dict in ``folder``, or None when it has none."""
    path = os.path.join(folder, METADATA_FILE)
    if not fileio.exists(path):
        return None
    try:
        return json.loads(fileio.read_text(path))
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None


def info_from_metadata(metadata, where="export"):
    """The ``DatasetInfo`` an export's metadata describes (names, palette, ignore
    label), for drawing predictions without the dataset.

    Metadata written before the class fields (only ``dataset``) is looked up in the
    dataset registry.

    Raises:
      ValueError: the metadata names no classes and no dataset, or is inconsistent
        (the message names ``where``).
    """
    metadata = metadata or {}
    if metadata.get("class_names") is None:
        if not metadata.get("dataset"):
            raise ValueError(f"{where}: its metadata names no classes and no dataset: "
                             "pass --dataset")
        return get_dataset_info(metadata["dataset"])
    try:
        return DatasetInfo(
            name=str(metadata.get("dataset") or metadata.get("model") or "export"),
            num_classes=int(metadata["num_classes"]),
            ignore_label=int(metadata.get("ignore_label", DEFAULT_IGNORE_LABEL)),
            class_names=tuple(metadata["class_names"]),
            palette=tuple(tuple(int(c) for c in colour) for colour in metadata["palette"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: bad metadata ({type(e).__name__}: {e})") from None
