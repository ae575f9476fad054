"""TFLite figures: file size, CPU latency and agreement with the float model.

For one model at one input size, each quantisation (float32, dynamic_range, int8) is
converted (:mod:`nasseg_tf.export.tflite`) and measured:

* ``file_bytes``: size of the ``.tflite`` flatbuffer;
* ``latency_ms``: median (and min/max) of ``repeats`` timed ``invoke()`` calls of
  the interpreter after ``warmup`` untimed ones, with ``num_threads`` threads;
* ``pixel_agreement``: fraction of pixels whose arg-max label equals the Keras
  float model's, over ``num_eval`` images; ``max_abs_probability``: the largest
  absolute difference of the softmax.

Weights: a ``.keras`` model (e.g. the ``model.keras`` of a demo training run) or
:func:`scaled_random_weights` with :func:`calibrate_batch_norm` (a zoo model's fresh
initialisation has zero logits, and every variant would "agree" on a constant map). Images: demo street
scenes (:func:`nasseg_tf.data.generate_demo_example`); int8 calibrates on
``num_calibration`` of them, distinct from the evaluated ones.
"""

import os
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf.data import generate_demo_example
from nasseg_tf.export import tflite
from nasseg_tf.models import zoo


def scaled_random_weights(model, seed=0):
    """Sets every weight of ``model`` to a sensibly scaled random value (in place).

    Kernels N(0, 2/fan_in) (depthwise: fan-in kh·kw), biases and BN beta
    U(-0.1, 0.1), gamma U(0.8, 1.2), moving mean N(0, 0.1²), moving variance
    U(0.5, 1.5); other variables (seed states) are left alone. Logits then vary
    across classes and pixels, so agreement figures mean something.
    """
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        path, shape = variable.path, tuple(variable.shape)
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("moving_mean",):
            value = 0.1 * rng.standard_normal(shape)
        elif leaf in ("beta", "bias"):
            value = rng.uniform(-0.1, 0.1, shape)
        elif leaf == "gamma":
            value = rng.uniform(0.8, 1.2, shape)
        elif len(shape) == 4:
            fan_in = shape[0] * shape[1] * (1 if "depthwise" in leaf else shape[2])
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            continue
        variable.assign(value.astype(variable.dtype))
    return model


def calibrate_batch_norm(model, images):
    """Sets every batch norm's moving statistics to those of ``images`` (uint8
    ``[n, H, W, 3]``), layer after layer, in one forward pass (in place).

    With random weights the moving statistics do not match the activations, and the
    signal fades or explodes through a deep network; after this each batch norm
    normalises what reaches it, as training would make it, and the logits vary
    across pixels and classes; finally the ``logits`` layer is scaled so the logits
    have unit standard deviation over ``images``.
    """
    norms = [layer for layer in model._flatten_layers()  # pylint: disable=protected-access
             if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0  # moving statistics := this batch's
        model(np.asarray(images, np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    # Logits of unit spread, as a trained model's are of a few units (random heads
    # can give tens, where softmax saturates and float rounding of the logits alone
    # moves probabilities by 1e-4).
    logits = next((layer for layer in model._flatten_layers()  # pylint: disable=protected-access
                   if layer.name == "logits" and layer.weights), None)
    if logits is not None:
        spread = float(np.std(np.asarray(model(np.asarray(images, np.float32),
                                                training=False))))
        if spread > 0:
            for weight in logits.weights:
                weight.assign(np.asarray(weight) / spread)
    return model


def demo_images(count, input_size, seed):
    """``count`` demo street scenes of ``input_size``, uint8 ``[count, H, W, 3]``."""
    height, width = input_size
    return np.stack([generate_demo_example(seed + i, height=height, width=width)[0]
                     for i in range(count)]).astype(np.uint8)


def _latency_ms(interpreter, image, warmup, repeats):
    runner = interpreter.get_signature_runner("serving_default")
    for _ in range(warmup):
        runner(images=image[None])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner(images=image[None])
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def bench_tflite(model_name, input_size=(257, 257), num_classes=19, overrides=None,
                 keras_model=None, quantizations=tflite.QUANTIZATIONS, num_threads=1,
                 warmup=3, repeats=20, num_eval=8, num_calibration=16, seed=0):
    """Runs the benchmark; returns a JSON-ready dict.

    ``keras_model``: a ``.keras`` file (e.g. a training run's ``model.keras``) to
    measure instead of ``model_name`` built with ``overrides`` and
    :func:`scaled_random_weights`.
    """
    input_size = tflite.check_input_size(input_size)
    if keras_model:
        import keras  # pylint: disable=import-outside-toplevel

        model = keras.saving.load_model(keras_model, compile=False)
        weights = f"trained: {os.path.abspath(keras_model)}"
    else:
        model = scaled_random_weights(
            zoo.build(model_name, num_classes=num_classes, **(overrides or {})), seed)
        calibrate_batch_norm(model, demo_images(16, input_size, seed=30_000 + seed))
        weights = (f"scaled random (seed {seed}), batch-norm statistics of 16 demo "
                   "images")
    calibration = demo_images(num_calibration, input_size, seed=10_000 + seed)
    images = demo_images(num_eval, input_size, seed=20_000 + seed)
    keras_fn = tf.function(lambda x: tf.nn.softmax(model(x, training=False)))
    reference = np.concatenate([keras_fn(tf.cast(images[i:i + 1], tf.float32)).numpy()
                                for i in range(num_eval)])
    labels = reference.argmax(-1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for quantization in quantizations:
            t0 = time.perf_counter()
            flatbuffer = tflite.convert(model, input_size, quantization,
                                        calibration if quantization == "int8" else None)
            convert_s = time.perf_counter() - t0
            path = os.path.join(tmp, f"{quantization}.tflite")
            with open(path, "wb") as f:
                f.write(flatbuffer)
            interpreter = tflite.make_interpreter(path, num_threads=num_threads)
            outputs = [tflite.run(interpreter, image) for image in images]
            probs = np.concatenate([o["probabilities"] for o in outputs])
            semantic = np.concatenate([o["semantic"] for o in outputs])
            results.append({
                "quantization": quantization,
                "file_bytes": os.path.getsize(path),
                "convert_s": round(convert_s, 2),
                "latency_ms": {k: round(v, 2) for k, v in _latency_ms(
                    interpreter, images[0], warmup, repeats).items()},
                "pixel_agreement": float((semantic == labels).mean()),
                "max_abs_probability": float(np.abs(probs - reference).max()),
            })
    return {
        "benchmark": "tflite",
        "model": model.name,
        "overrides": overrides or {},
        "weights": weights,
        "num_classes": int(reference.shape[-1]),
        "input_size": list(input_size),
        "num_threads": num_threads,
        "warmup": warmup,
        "repeats": repeats,
        "num_eval_images": num_eval,
        "num_calibration_images": num_calibration,
        "images": "demo street scenes (nasseg_tf.data.generate_demo_example)",
        "interpreter": tflite.interpreter_name(),
        "tensorflow": tf.__version__,
        "results": results,
    }
