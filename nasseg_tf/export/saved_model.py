"""SavedModel export for serving.

Signatures of the exported model:

* ``serving_default(images: uint8 [N, H, W, 3])`` — any N, H, W;
* ``serve_encoded(encoded: string [N])`` — PNG or JPEG bytes; the N images must share
  one size (they are decoded and stacked into one batch).

Both return ``semantic`` (int32 ``[N, H, W]``, the arg-max label at input size) and
``probabilities`` (float32 ``[N, H, W, C]``, softmax of the logits).

The export is written to a temporary folder beside ``export_dir`` and renamed into
place, so an interrupted export never leaves a half-written model behind.
"""

import contextlib
import json
import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging as absl_logging


@contextlib.contextmanager
def _quiet_absl():
    """SavedModel saving logs one INFO line naming every captured tensor (thousands
    of names for a zoo model); keep absl at WARNING while saving."""
    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(min(level, absl_logging.WARNING))  # absl: higher = more verbose
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def _predictions(model, images):
    logits = model(tf.cast(images, tf.float32), training=False)
    logits = tf.cast(logits, tf.float32)
    return {
        "semantic": tf.argmax(logits, axis=-1, output_type=tf.int32),
        "probabilities": tf.nn.softmax(logits, axis=-1),
    }


def _decode_batch(encoded):
    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3])

    return tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
        [None, None, 3], tf.uint8))


def _serving_module(model):
    """A tf.Module holding the model's variables and the two serving functions.

    Only variables are tracked (not the Keras model object): saving then does not
    serialise every Keras layer, which keeps export fast.
    """
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = tf.function(
        lambda images: _predictions(model, images),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    # Calls the traced ``serve`` function: the model is traced once, not twice.
    module.serve_encoded = tf.function(
        lambda encoded: module.serve(_decode_batch(encoded)),
        input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    return module


METADATA_FILE = "nasseg_metadata.json"


def export_saved_model(model, export_dir, overwrite=True, metadata=None):
    """Exports ``model`` (raw pixels → logits) as a serving SavedModel.

    Args:
      model: a zoo ``keras.Model`` taking float pixels in [0, 255].
      export_dir: destination folder (created; replaced when ``overwrite``).
      overwrite: replace an existing export; otherwise raise ``FileExistsError``.
      metadata: optional JSON-able dict (dataset name, class names, palette) written to
        ``export_dir/nasseg_metadata.json`` so serving and ``nasseg-predict`` can
        draw the classes.

    Returns:
      ``export_dir``.

    The SavedModel is for serving: it is written without TF's native checkpoint
    saver ops (``experimental_skip_saver``), which halves export time; reload it with
    ``tf.saved_model.load``. To fine-tune, use the ``.keras`` file or a checkpoint.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it")
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)

    module = _serving_module(model)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "serve_encoded": module.serve_encoded.get_concrete_function(),
    }
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False,
                                         experimental_skip_saver=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with _quiet_absl():
            tf.saved_model.save(module, os.path.join(staging, "model"),
                                signatures=signatures, options=options)
        if metadata is not None:
            with open(os.path.join(staging, "model", METADATA_FILE), "w",
                      encoding="utf-8") as f:
                json.dump(metadata, f, indent=2)
        old = None
        if os.path.exists(export_dir):
            old = export_dir + f".old-{os.getpid()}"
            os.replace(export_dir, old)
        os.replace(os.path.join(staging, "model"), export_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def load_serving(export_dir):
    """Loads an exported model; returns the loaded object (call its signatures)."""
    if not os.path.isdir(export_dir):
        raise FileNotFoundError(f"no SavedModel at {export_dir}")
    return tf.saved_model.load(export_dir)


def load_metadata(export_dir):
    """The export's metadata dict, or None when it has none."""
    path = os.path.join(export_dir, METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dataset_metadata(info, model_name=""):
    """Metadata for :func:`export_saved_model` from a ``DatasetInfo``."""
    return {"model": model_name, "dataset": info.name, "num_classes": info.num_classes,
            "ignore_label": info.ignore_label, "class_names": list(info.class_names),
            "palette": [list(c) for c in info.palette]}
