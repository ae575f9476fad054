"""Warm starts: from our runs, .keras files and official checkpoints; subsets; resume wins."""


import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.models import zoo
from nasseg_tf.models.weights import CheckpointImportError
from nasseg_tf.train.checkpointing import variables_by_path
from nasseg_tf.train.warm_start import warm_start

TINY = dict(depth_multiplier=0.25, context_filters=8)


def _model(name="mobilenetv2_aspp", num_classes=3, seed=0):
    import keras  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    return zoo.build(name, num_classes=num_classes, **TINY)


def _value(model, path):
    return variables_by_path(model.variables)[path].numpy()


def test_a_training_checkpoint_warm_starts_a_model_with_another_head(tmp_path):
    source = _model("mobilenetv2_aspp", seed=1)
    prefix = tf.train.Checkpoint(model=variables_by_path(source.variables)).save(
        str(tmp_path / "run" / "checkpoints" / "ckpt"))
    target = _model("mobilenetv2_dpc", seed=2)
    report = warm_start(target, str(tmp_path / "run"))
    assert report["kind"] == "checkpoint" and report["source"] == prefix
    np.testing.assert_array_equal(_value(target, "block3_expand/kernel"),
                                  _value(source, "block3_expand/kernel"))
    # The DPC head is not in an ASPP run: it keeps its own initial weights.
    assert any(p.startswith("context/branch_0/") for p in report["not_in_source"])
    assert not any(p.startswith("block") for p in report["not_in_source"])


def test_exclude_patterns_leave_the_logits_and_a_class_mismatch_names_them(tmp_path):
    source = _model(num_classes=5, seed=1)
    path = str(tmp_path / "source.keras")
    source.save(path)
    target = _model(num_classes=3, seed=2)
    before = _value(target, "logits/kernel")
    with pytest.raises(CheckpointImportError, match=r"logits/kernel .*init_exclude"):
        warm_start(target, path)
    report = warm_start(target, path, exclude=["logits/.*"])
    assert report["kind"] == "keras" and report["excluded"] == ["logits/kernel",
                                                               "logits/bias"]
    np.testing.assert_array_equal(_value(target, "logits/kernel"), before)
    np.testing.assert_array_equal(_value(target, "stem_conv/kernel"),
                                  _value(source, "stem_conv/kernel"))


def test_a_missing_source_and_a_source_of_nothing_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="initial checkpoint not found"):
        warm_start(_model(), str(tmp_path / "nope"))
    other = tf.train.Checkpoint(w=tf.Variable(1.0)).save(str(tmp_path / "other" / "c"))
    with pytest.raises(CheckpointImportError, match="holds none"):
        warm_start(_model(), other)
