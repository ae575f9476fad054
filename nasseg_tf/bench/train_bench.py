"""Training and inference throughput of a zoo model on synthetic data.

Measures, in one process: the first training call (trace + graph build), the median
seconds per training step after warm-up, training images/s, evaluation (inference)
images/s at the same size, Multiply-Adds per second of inference, and the peak
resident memory of the process.
"""

import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf import counting
from nasseg_tf.models import zoo
from nasseg_tf.train.segmentation import SegmentationTask


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_train(model_name, crop_size=(513, 513), batch_size=2, num_classes=19,
                steps=5, eval_repeats=5, overrides=None, seed=0):
    """Runs the benchmark; returns a JSON-ready dict."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    h, w = crop_size
    images = tf.constant(rng.uniform(0, 255, (batch_size, h, w, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, num_classes, (batch_size, h, w)).astype("int32"))
    model_fn = lambda: zoo.build(model_name, num_classes=num_classes, **(overrides or {}))  # noqa: E731
    task = SegmentationTask(model_fn, input_fn=None, learning_rate=0.01)
    task.build()
    step_var = tf.Variable(0, dtype=tf.int64)
    train_step = tf.function(lambda: task.train_step(step_var, (images, labels)))
    t0 = time.perf_counter()
    train_step()["loss"].numpy()
    first_call = time.perf_counter() - t0
    step_seconds = _median_time(lambda: train_step()["loss"].numpy(), steps)

    infer = tf.function(lambda x: task.model(x, training=False))
    infer(images).numpy()
    eval_seconds = _median_time(lambda: infer(images).numpy(), eval_repeats)
    madds = counting.count(task.model, crop_size, batch_size=batch_size).madds
    return {
        "benchmark": "train",
        "model": model_name,
        "overrides": overrides or {},
        "crop_size": list(crop_size),
        "batch_size": batch_size,
        "first_call_seconds": first_call,
        "train_step_seconds_median": step_seconds,
        "train_images_per_second": batch_size / step_seconds,
        "eval_batch_seconds_median": eval_seconds,
        "eval_images_per_second": batch_size / eval_seconds,
        "inference_madds_per_batch": madds,
        "inference_gmadds_per_second": madds / eval_seconds / 1e9,
        "peak_rss_gib": _peak_rss_gib(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
