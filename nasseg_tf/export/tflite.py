"""TFLite / LiteRT export: float32, dynamic-range and full-integer (int8) models.

The converted model has one signature, ``serving_default``, taking uint8 ``images``
of a **fixed** size ``[1, H, W, 3]`` and returning ``semantic`` (int32 ``[1, H, W]``)
and, unless converted with ``probabilities=False``, ``probabilities`` (float32
``[1, H, W, C]``). The size is fixed because

* a TFLite interpreter allocates every tensor for one shape (another size means
  ``resize_tensor_input`` + a new allocation), and the XNNPACK CPU delegate plans its
  kernels for static shapes;
* with static sizes the model's resizes and pooling windows are constants: the graph
  holds plain resize/pool ops, not the shape arithmetic and gathers of the
  any-size SavedModel;
* full-integer quantisation calibrates activation ranges at one size.

An app resizes (or tiles) its frames to ``H x W`` first; DeepLab models are usually
run at 513x513 or 257x257.

Quantisations (:data:`QUANTIZATIONS`):

``float32``
    weights and arithmetic in float32; agrees with the Keras model to float rounding.
``dynamic_range``
    weights stored as int8 (about 4x smaller), dequantised for float arithmetic.
``int8``
    full-integer: weights and activations int8, activation ranges calibrated on
    *representative images* (:func:`representative_images` reads them from the
    user's TFRecords); the uint8 input and the float/int32 outputs stay as above.

Interpreter: :func:`make_interpreter` uses LiteRT (``ai_edge_litert``) when it is
installed, else ``tf.lite.Interpreter`` (deprecated in favour of LiteRT, still in
TensorFlow 2.21; its deprecation warning is silenced).
"""

import os
import warnings

import numpy as np
import tensorflow as tf

from nasseg_tf import fileio
from nasseg_tf.data.tfrecord import parse_example
from nasseg_tf.export.metadata import complete_metadata, write_metadata
from nasseg_tf.export.saved_model import backend_variables, num_classes_of, predictions

QUANTIZATIONS = ("float32", "dynamic_range", "int8")
MODEL_FILE = "model.tflite"


def check_input_size(input_size):
    """``(H, W)`` as ints once both are positive."""
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), not {input_size!r}") \
            from None
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, not {height}x{width}")
    return height, width


def _check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; known: "
                         f"{', '.join(QUANTIZATIONS)}")


def representative_images(pattern, num_images, input_size):
    """Up to ``num_images`` images of the TFRecords ``pattern``, resized to
    ``input_size`` (bilinear), as uint8 ``[n, H, W, 3]``.

    The records are the package's DeepLab examples (:func:`~nasseg_tf.data.tfrecord.
    parse_example`), read in file order; local or remote patterns.

    Raises:
      FileNotFoundError: nothing matches ``pattern``.
      ValueError: the files hold no image.
    """
    files = fileio.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
    height, width = check_input_size(input_size)

    def image(serialized):
        decoded = parse_example(serialized)["image"]
        resized = tf.image.resize(tf.cast(decoded, tf.float32), [height, width])
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    dataset = tf.data.TFRecordDataset(files).take(int(num_images)).map(image)
    images = [x.numpy() for x in dataset]
    if not images:
        raise ValueError(f"no images in the TFRecords {pattern!r}")
    return np.stack(images)


def _tflite_function(model, input_size, probabilities):
    """``(concrete function, tf.Module tracking the model's variables)``."""
    module = tf.Module()
    module.model_variables = backend_variables(model)  # frozen into constants
    module.serve = tf.function(
        lambda images: predictions(model, images, probabilities),
        input_signature=[tf.TensorSpec([1, *input_size, 3], tf.uint8, name="images")])
    return module.serve.get_concrete_function(), module


def convert(model, input_size, quantization="float32", representative=None,
            probabilities=True):
    """The TFLite flatbuffer (bytes) of ``model`` at the fixed ``input_size``.

    Args:
      model: a zoo ``keras.Model`` taking float pixels in [0, 255].
      input_size: ``(H, W)`` of the one image the model takes.
      quantization: one of :data:`QUANTIZATIONS`.
      representative: for ``int8``: uint8 images ``[n, H, W, 3]`` to calibrate the
        activation ranges on (:func:`representative_images`).
      probabilities: also output the softmax.

    Raises:
      ValueError: a bad size or quantization; ``int8`` without representative images
        or with images of another size.
    """
    input_size = check_input_size(input_size)
    _check_quantization(quantization)
    function, module = _tflite_function(model, input_size, probabilities)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs representative images (the "
                             "run's training TFRecords or --representative_pattern)")
        representative = np.asarray(representative, np.uint8)
        if representative.shape[1:] != (*input_size, 3):
            raise ValueError(f"representative images are {representative.shape[1:3]}, "
                             f"not the input size {input_size}")
        converter.representative_dataset = lambda: (
            {"images": image[None]} for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export_tflite(model, export_dir, input_size, quantization="float32",
                  representative=None, probabilities=True, metadata=None,
                  overwrite=True):
    """Writes ``export_dir/model.tflite`` and ``export_dir/nasseg_metadata.json``.

    The folder is filled aside and installed whole (:func:`nasseg_tf.fileio.
    staging_dir`; local or remote). Arguments as :func:`convert`; ``metadata`` as
    for :func:`~nasseg_tf.export.export_saved_model` (``input``, ``outputs``,
    ``quantization`` and ``export_format`` are filled in).

    Returns:
      The path of the ``.tflite`` file.

    Raises:
      FileExistsError: ``export_dir`` exists and not ``overwrite``.
    """
    input_size = check_input_size(input_size)
    _check_quantization(quantization)
    export_dir = fileio.abspath(export_dir)
    if fileio.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it")
    metadata = complete_metadata(
        dict({"model": model.name}, **(metadata or {})), num_classes_of(model),
        input={"name": "images", "dtype": "uint8", "shape": [1, *input_size, 3]},
        outputs=["semantic", "probabilities"] if probabilities else ["semantic"],
        max_pixels=input_size[0] * input_size[1], export_format="tflite",
        quantization=quantization, file=MODEL_FILE)
    flatbuffer = convert(model, input_size, quantization, representative, probabilities)
    with fileio.staging_dir(export_dir) as staging:
        fileio.atomic_write_bytes(os.path.join(staging, MODEL_FILE), flatbuffer)
        write_metadata(staging, metadata)
    return os.path.join(export_dir, MODEL_FILE)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


def interpreter_name():
    """Which interpreter :func:`make_interpreter` uses (module and version)."""
    cls = _interpreter_class()
    if cls is tf.lite.Interpreter:
        return f"tf.lite.Interpreter (TensorFlow {tf.__version__})"
    import ai_edge_litert  # pylint: disable=import-outside-toplevel
    return f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}"


def make_interpreter(model, num_threads=None):
    """An allocated interpreter for ``model`` (flatbuffer bytes or a ``.tflite``
    path, local or remote)."""
    if not isinstance(model, (bytes, bytearray)):
        model = fileio.read_bytes(os.fspath(model))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        interpreter = _interpreter_class()(model_content=bytes(model),
                                           num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def run(interpreter, image):
    """The outputs (``semantic``, ``probabilities``) of one uint8 image ``[H, W, 3]``
    (or ``[1, H, W, 3]``) through ``interpreter``'s ``serving_default``."""
    image = np.asarray(image, np.uint8)
    runner = interpreter.get_signature_runner("serving_default")
    return runner(images=image if image.ndim == 4 else image[None])
