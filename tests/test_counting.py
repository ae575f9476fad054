"""Params / Multiply-Adds counter against hand-computed figures."""

import keras
import pytest

from nasseg_tf import counting
from nasseg_tf.layers.common import ConvBN
from nasseg_tf.layers.heads import ASPP


def _model(inner):
    x = keras.Input((None, None, 3))
    return keras.Model(x, inner(x))


def test_conv_madds_use_real_output_shapes_through_nested_layers():
    def inner(x):
        y = ConvBN(8, 3, strides=2, name="a")(x)                  # 16x16 out
        y = ConvBN(4, 5, dilation_rate=2, separable=True, name="b")(y)
        return keras.layers.Dense(2, name="fc")(y)

    report = counting.count(_model(inner), (32, 31))
    positions = 16 * 16
    expected = {
        "a/conv": positions * 9 * 3 * 8,
        "b/depthwise": positions * 25 * 8,
        "b/pointwise": positions * 8 * 4,
        "fc": positions * 4 * 2,
    }
    assert {r.path: r.madds for r in report.layers} == expected
    assert report.madds == sum(expected.values())
    # Trainable: kernels, BN gamma/beta (a: 8+8, b: 4+4), dense kernel + bias.
    assert report.params == 9 * 3 * 8 + 16 + 25 * 8 + 8 * 4 + 8 + 4 * 2 + 2
    assert report.non_trainable_params == 2 * 8 + 2 * 4


def test_context_subtotal_excludes_projection_and_bn():
    model = _model(lambda x: ASPP(16, (2, 4), name="context")(ConvBN(10, 1)(x)))
    summary = counting.describe(model, (8, 8))
    branches = 10 * 16 + 2 * (9 * 10 * 16) + 10 * 16  # 1x1, two 3x3, pooling 1x1
    assert summary["context_params"] == branches
    assert summary["context_madds"] == 64 * (10 * 16 + 2 * 9 * 10 * 16) + 10 * 16


def test_batch_size_scales_madds():
    model = _model(lambda x: keras.layers.Conv2D(4, 1)(x))
    assert counting.count(model, (4, 4), batch_size=3).madds == 3 * 16 * 3 * 4


@pytest.mark.parametrize("value,text", [(10147427, "10.15M"), (333.25e9, "333.25B"),
                                        (999, "999")])
def test_format_count(value, text):
    assert counting.format_count(value) == text
