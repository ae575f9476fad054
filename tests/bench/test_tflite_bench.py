"""The TFLite benchmark: weights that make agreement meaningful, and one tiny run."""

import numpy as np
import pytest

from nasseg_tf import zoo
from nasseg_tf.bench.tflite_bench import (bench_tflite, calibrate_batch_norm, demo_images,
                                          scaled_random_weights)


def test_random_weights_with_calibrated_batch_norms_make_logits_vary():
    model = zoo.build("mobilenetv2_dpc", num_classes=4, depth_multiplier=0.25,
                      context_filters=8)
    images = demo_images(1, (33, 33), seed=0).astype("float32")
    fresh = np.asarray(model(images, training=False))
    assert np.ptp(fresh) < 1e-5  # a fresh zoo model: constant (zero) logits
    scaled_random_weights(model, seed=1)
    calibrate_batch_norm(model, demo_images(4, (33, 33), seed=5))
    logits = np.asarray(model(images, training=False))
    assert logits.std(axis=(0, 1, 2)).min() > 0.1  # every class varies over pixels
    momenta = {layer.momentum for layer in model._flatten_layers()  # pylint: disable=protected-access
               if hasattr(layer, "moving_variance")}
    assert momenta and 0.0 not in momenta  # restored after the calibration pass


@pytest.mark.slow
@pytest.mark.e2e
def test_bench_reports_size_latency_and_agreement():
    result = bench_tflite("mobilenetv2_dpc", (33, 33), num_classes=4,
                          overrides=dict(depth_multiplier=0.25, context_filters=8),
                          quantizations=("float32", "int8"), repeats=3, num_eval=2,
                          num_calibration=2)
    float32, int8 = result["results"]
    assert float32["pixel_agreement"] == 1.0 and float32["max_abs_probability"] < 1e-4
    # Chance is 1/4 (4 classes); random weights measured 0.49 (no class margins).
    assert 0.25 < int8["pixel_agreement"] <= 1.0
    assert int8["file_bytes"] < float32["file_bytes"]
    assert float32["latency_ms"]["min"] <= float32["latency_ms"]["median"] > 0
