"""``nasseg-zoo describe``: a paper figure is compared only where it was measured like
ours (input size, classes)."""

import pytest
from absl import app

from nasseg_tf.cli import zoo_tool

ADL = {"params": 10.15e6, "madds": 333.25e9, "source": "Liu et al. 2019"}
DPC = {"context_params": 0.81e6, "context_madds": 6.84e9, "madds": 502.07e9,
       "madds_input_size": (1025, 2049), "context_input_size": (1025, 2049),
       "source": "Chen et al. 2018"}


def _summary(paper, size, num_classes=19, context=False):
    out = {"name": "m", "num_classes": num_classes, "input_size": list(size),
           "params": 10.0e6, "madds": 300.0e9, "paper": paper}
    if context:
        out.update(context_params=0.8e6, context_madds=6.8e9)
    return out


def _row(text, label):
    return next(line for line in text.splitlines() if line.strip().startswith(label))


def test_multiply_adds_compare_only_at_the_papers_size():
    small = zoo_tool.describe_text(_summary(ADL, (65, 129)))
    assert "x)" not in _row(small, "Multiply-Adds") and "333.25B" not in _row(
        small, "Multiply-Adds")
    assert "(333.25B) are at 1024x2048 (assumed: the paper does not state it): run with " \
           "--input_size=1024x2048 to compare" in small
    assert "(0.985x)" in _row(small, "params")  # params do not depend on the size
    full = zoo_tool.describe_text(_summary(ADL, (1024, 2048)))
    assert "333.25B  (0.900x)" in _row(full, "Multiply-Adds @ 1024x2048")
    assert "compared at 1024x2048 (assumed" in full


def test_stated_sizes_and_other_class_counts():
    text = zoo_tool.describe_text(_summary(DPC, (1025, 2049), num_classes=21,
                                           context=True))
    assert "(0.988x)" in _row(text, "context params")
    assert "(0.994x)" in _row(text, "context Multiply-Adds")  # context: no logits
    assert "x)" not in _row(text, "Multiply-Adds @")  # whole network: other classes
    assert "--input_size=1025x2049 --num_classes=19 to compare" in text
    at_paper = zoo_tool.describe_text(_summary(DPC, (1025, 2049), context=True))
    assert "(0.598x)" in _row(at_paper, "Multiply-Adds @ 1025x2049")
    assert "to compare" not in at_paper and "assumed" not in at_paper
    other = zoo_tool.describe_text(_summary(ADL, (1024, 2048), num_classes=21))
    assert "x)" not in _row(other, "params") and "are for 19 classes" in other


def test_usage_errors():
    with pytest.raises(app.UsageError):
        zoo_tool.zoo_tool(["list", "extra"], 19, "1x1", False)
    with pytest.raises(ValueError, match="HxW"):
        zoo_tool.parse_size("65by129")
