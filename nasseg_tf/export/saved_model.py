"""SavedModel export for serving.

Signatures of the exported model:

* ``serving_default(images: uint8 [N, H, W, 3])`` — any N ≥ 1 and H, W ≥ 1 with
  H·W ≤ ``max_pixels``;
* ``serve_encoded(encoded: string [N])`` — PNG or JPEG bytes; the N ≥ 1 images must
  share one size (they are decoded and stacked into one batch), within the same limit.

Both return ``semantic`` (int32 ``[N, H, W]``, the arg-max label at input size) and,
unless exported with ``probabilities=False``, ``probabilities`` (float32 ``[N, H, W, C]``,
softmax of the logits). Leaving the probabilities out makes a REST answer C+1 times
smaller (JSON numbers for every class of every pixel).

Versions for TF Serving: :func:`export_version` writes ``BASE/<N>/`` (N the next
integer after the largest numbered folder in ``BASE``), the layout TensorFlow Serving
watches (``--model_base_path=BASE``); :func:`resolve_export` turns ``BASE`` into its
newest version for readers. Every export holds ``nasseg_metadata.json``
(:mod:`nasseg_tf.export.metadata`: class names, palette, input, source).

Variables: the model's Keras variables are tracked through the ``tf.Variable`` each
wraps (:func:`backend_variables`). Tracking the Keras variables themselves saves a
*copy* of each variable in the object graph while the functions capture the
original: ``tf.saved_model.load`` still works, but the TFLite converter cannot tie
the captured handles to saved values, keeps 300-odd ``VAR_HANDLE``/``READ_VARIABLE``
ops with nothing to initialise them, and the converted model reads uninitialised
memory (NaN outputs). With the underlying variables the converter freezes them into
constants.

Input limits: memory and time grow with the pixels of an image (a 4000×4000 image
through a small model takes gigabytes), so an export refuses images larger than its
``max_pixels`` (set at export, recorded in its metadata) before running the model. An
empty batch (N = 0) and an empty image (H or W = 0) are refused too: a batch of no
images is a client's mistake, and answering it would need control flow in the serving
graph. Each refusal is an ``InvalidArgumentError`` whose message starts with
``serving input:`` and says what was wrong, e.g. ``serving input: image of 4000x4000
= 16000000 pixels exceeds max_pixels=4194304 of this model (set at export)``;
:func:`serving_input_error` extracts it.

The export is written to a temporary folder beside ``export_dir`` and installed
whole (:func:`nasseg_tf.fileio.staging_dir`), so an interrupted export never leaves a
half-written model behind and a replaced export is seen whole, old or new; an export
first removes the temporaries that killed exports left in that folder.
"""

import contextlib
import operator
import os
import re

import tensorflow as tf
from absl import logging as absl_logging

from nasseg_tf import fileio
from nasseg_tf.export.metadata import complete_metadata, read_metadata, write_metadata

DEFAULT_MAX_PIXELS = 2048 * 2048
"""Default limit on H·W of one served image (4_194_304)."""

INPUT_ERROR_PREFIX = "serving input: "
"""Starts the message of every input check of the serving signatures."""


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


def backend_variables(model):
    """The ``tf.Variable`` under each of ``model``'s Keras variables (see the module
    docstring: what an export must track for the TFLite converter to freeze them)."""
    out = []
    for variable in model.variables:
        value = getattr(variable, "value", variable)
        if not isinstance(value, tf.Variable):
            raise TypeError(f"variable {variable.path} is not a TensorFlow variable "
                            f"({type(value).__name__}): export needs the TensorFlow "
                            "backend")
        out.append(value)
    return out


def predictions(model, images, probabilities=True):
    """The serving outputs of ``model`` for uint8 ``images``: ``semantic`` (int32
    arg-max label) and, with ``probabilities``, the softmax."""
    logits = model(tf.cast(images, tf.float32), training=False)
    logits = tf.cast(logits, tf.float32)
    out = {"semantic": tf.argmax(logits, axis=-1, output_type=tf.int32)}
    if probabilities:
        out["probabilities"] = tf.nn.softmax(logits, axis=-1)
    return out


def _decode_batch(encoded):
    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3])

    return tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
        [None, None, 3], tf.uint8))


def _assert(condition, message, *values):
    """An assertion whose InvalidArgumentError says ``INPUT_ERROR_PREFIX + message``
    with ``{}`` filled from ``values`` (tensors)."""
    text = tf.strings.format(INPUT_ERROR_PREFIX + message, values) if values else \
        INPUT_ERROR_PREFIX + message
    return tf.debugging.Assert(condition, [text])


def _checked(tensor, *make_checks):
    """``tensor`` once each ``make_checks`` assertion has passed, in order."""
    for make_check in make_checks:
        with tf.control_dependencies([make_check()]):
            tensor = tf.identity(tensor)
    return tensor


def _check_images(images, max_pixels):
    """``images`` [N, H, W, 3] after the input checks (see the module docstring)."""
    shape = tf.shape(images, out_type=tf.int64)
    height, width = shape[1], shape[2]
    checks = [
        lambda: _assert(shape[0] > 0, "empty batch: give at least one image"),
        lambda: _assert(tf.logical_and(height > 0, width > 0),
                        "empty image of {}x{} pixels", height, width)]
    if max_pixels:
        checks.append(lambda: _assert(
            height * width <= max_pixels,
            "image of {}x{} = {} pixels exceeds max_pixels=%d of this model (set at "
            "export)" % max_pixels, height, width, height * width))
    return _checked(images, *checks)


def serving_input_error(error):
    """What a serving signature's input check said in ``error`` (an
    ``InvalidArgumentError`` from calling a signature), without the ``serving input:``
    prefix; None when ``error`` comes from elsewhere."""
    match = re.search(r"\[" + re.escape(INPUT_ERROR_PREFIX) + r"([^\]]*)\]",
                      getattr(error, "message", str(error)))
    return match[1] if match else None


def _serving_module(model, max_pixels, probabilities=True):
    """A tf.Module holding the model's variables and the two serving functions.

    Only variables are tracked (not the Keras model object): saving then does not
    serialise every Keras layer, which keeps export fast.
    """
    module = tf.Module()
    module.model_variables = backend_variables(model)
    module.serve = tf.function(
        lambda images: predictions(model, _check_images(images, max_pixels),
                                   probabilities),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])

    def serve_encoded(encoded):
        # An empty batch is refused before decoding (map_fn cannot stack no images of
        # unknown size); ``serve`` checks the decoded sizes.
        encoded = _checked(encoded, lambda: _assert(
            tf.size(encoded) > 0, "empty batch: give at least one image"))
        return module.serve(_decode_batch(encoded))

    # Calls the traced ``serve`` function: the model is traced once, not twice.
    module.serve_encoded = tf.function(
        serve_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    return module


def _max_pixels(value):
    """``value`` as a pixel limit: a positive int, or None for no limit."""
    if value is None:
        return None
    try:
        limit = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        limit = None
    if limit is None or limit < 0:
        raise ValueError(f"max_pixels must be a number of pixels (0: no limit), not "
                         f"{value!r}")
    return limit or None


def num_classes_of(model):
    """The number of classes ``model`` outputs (its last output dimension)."""
    classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if classes is None:
        raise ValueError(f"cannot tell the classes of model {model.name!r}: its output "
                         "has no static channel count")
    return int(classes)


def export_saved_model(model, export_dir, overwrite=True, metadata=None,
                       max_pixels=DEFAULT_MAX_PIXELS, probabilities=True):
    """Exports ``model`` (raw pixels → logits) as a serving SavedModel.

    Args:
      model: a zoo ``keras.Model`` taking float pixels in [0, 255].
      export_dir: destination folder (created; replaced when ``overwrite``).
      overwrite: replace an existing export; otherwise raise ``FileExistsError``.
      metadata: JSON-able dict for ``export_dir/nasseg_metadata.json``
        (:mod:`~nasseg_tf.export.metadata`): class fields from
        :func:`~nasseg_tf.export.metadata.class_metadata`, ``source`` ...; without
        class names the classes get generic names. The format header, ``model``,
        ``input``, ``outputs``, ``max_pixels`` (null: no limit) and
        ``export_format`` are filled in here.
      max_pixels: the largest H·W of one image the signatures accept (default
        2048×2048); 0 or None for no limit.
      probabilities: also return the softmax (``probabilities``); ``semantic`` is
        always returned.

    Returns:
      ``export_dir``.

    Raises:
      FileExistsError: ``export_dir`` exists and not ``overwrite``.
      ValueError: a bad ``max_pixels``.

    The SavedModel is for serving: it is written without TF's native checkpoint
    saver ops (``experimental_skip_saver``), which halves export time; reload it with
    ``tf.saved_model.load``. To fine-tune, use the ``.keras`` file or a checkpoint.
    """
    max_pixels = _max_pixels(max_pixels)
    metadata = complete_metadata(
        dict({"model": model.name}, **(metadata or {})), num_classes_of(model),
        input={"name": "images", "dtype": "uint8", "shape": [None, None, None, 3],
               "encoded_name": "encoded"},
        outputs=["semantic", "probabilities"] if probabilities else ["semantic"],
        max_pixels=max_pixels, export_format="saved_model")
    export_dir = fileio.abspath(export_dir)
    if fileio.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it")
    parent = os.path.dirname(export_dir)
    fileio.makedirs(parent)
    fileio.clean_stale_temps(parent)
    # Staging folders of exports before the fileio naming record no owner: removed
    # after a day.
    fileio.clean_stale_temps(parent, fileio.legacy_mkdtemp_glob(".export-"))

    module = _serving_module(model, max_pixels, probabilities)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "serve_encoded": module.serve_encoded.get_concrete_function(),
    }
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False,
                                         experimental_skip_saver=True)
    with fileio.staging_dir(export_dir) as staging:
        with _quiet_absl():
            tf.saved_model.save(module, staging, signatures=signatures, options=options)
        write_metadata(staging, metadata)
    return export_dir


# --------------------------------------------------------------------------------------
# Version folders (TF Serving's layout).


def versions(base_dir):
    """The version numbers of the numbered sub-folders of ``base_dir``, sorted (none
    when it is missing)."""
    if not fileio.isdir(base_dir):
        return []
    return sorted(int(name) for name in fileio.listdir(base_dir)
                  if name.isdigit() and fileio.isdir(os.path.join(base_dir, name)))


def next_version(base_dir):
    """One more than the largest version in ``base_dir`` (1 for none)."""
    found = versions(base_dir)
    return found[-1] + 1 if found else 1


def export_version(model, base_dir, version=None, overwrite=False, **kwargs):
    """Exports ``model`` as version ``version`` (default :func:`next_version`) of
    ``base_dir``: ``base_dir/<version>/``, the layout TF Serving reads.

    Args:
      model, kwargs: as :func:`export_saved_model`.
      base_dir: the model's base folder (local or remote, e.g. ``gs://``).
      version: a positive int; default the next free number.
      overwrite: replace an existing ``version`` (an automatic version never exists).

    Returns:
      The version folder written.

    Two exports started at once into the same ``base_dir`` can pick the same number;
    the second then fails (``FileExistsError``) unless ``overwrite``.
    """
    if version is None:
        version = next_version(base_dir)
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, not {version!r}")
    return export_saved_model(model, os.path.join(fileio.abspath(base_dir), str(version)),
                              overwrite=overwrite, **kwargs)


def _is_saved_model(path):
    return fileio.exists(os.path.join(path, "saved_model.pb"))


def resolve_export(path):
    """The SavedModel folder ``path`` designates: ``path`` itself, or the newest
    version folder of a TF Serving base folder.

    Raises:
      FileNotFoundError: neither.
    """
    path = fileio.abspath(path)
    if _is_saved_model(path):
        return path
    for version in reversed(versions(path)):
        inside = os.path.join(path, str(version))
        if _is_saved_model(inside):
            return inside
    raise FileNotFoundError(f"no SavedModel at {path} (neither saved_model.pb nor a "
                            "numbered version folder holding one)")


def load_serving(export_dir):
    """Loads an exported model (a SavedModel folder or a version base folder, see
    :func:`resolve_export`); returns the loaded object (call its signatures)."""
    return tf.saved_model.load(resolve_export(export_dir))


def load_metadata(export_dir):
    """The export's metadata dict (of the newest version of a base folder), or None
    when it has none."""
    try:
        export_dir = resolve_export(export_dir)
    except FileNotFoundError:
        pass
    return read_metadata(export_dir)
