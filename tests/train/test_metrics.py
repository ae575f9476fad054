"""Tests for nasseg_tf.train.metrics: hand-computed matrices and scores."""

import numpy as np
import pytest
import tensorflow as tf

from layer_checks import mirrored_strategy
from nasseg_tf.train import metrics

# Six counted pixels: ground truth 0 0 0 1 1 2, prediction 0 0 1 1 2 2; class 3 never
# occurs. Two more pixels are ignored (255) and one has an out-of-range label (7).
LABELS = np.array([[0, 0, 0, 1], [1, 2, 255, 7], [255, 255, 255, 255]])
PREDICTIONS = np.array([[0, 0, 1, 1], [2, 2, 3, 0], [0, 1, 2, 3]])
HAND_CM = np.array([[2, 1, 0, 0],
                    [0, 1, 1, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 0]])


def test_update_counts_hand_example_and_skips_ignore_and_out_of_range_labels():
    cm = metrics.ConfusionMatrix(num_classes=4).update(LABELS, PREDICTIONS)
    np.testing.assert_array_equal(cm.matrix, HAND_CM)
    assert cm.matrix.dtype == np.int64
    cm.update(LABELS, PREDICTIONS)
    np.testing.assert_array_equal(cm.matrix, 2 * HAND_CM)
    np.testing.assert_array_equal(cm.reset().matrix, np.zeros((4, 4)))


def test_negative_labels_and_custom_ignore_label_are_skipped():
    cm = metrics.ConfusionMatrix(num_classes=3, ignore_label=-1)
    cm.update([-1, -5, 0, 2, 255], [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_scores_hand_computed_with_absent_class_excluded_from_miou():
    scores = metrics.segmentation_scores(HAND_CM, ["a", "b", "c", "d"])
    iou = scores["per_class_iou"]
    assert iou["a"] == pytest.approx(2 / 3)  # tp 2, gt 3, pred 2
    assert iou["b"] == pytest.approx(1 / 3)  # tp 1, gt 2, pred 2
    assert iou["c"] == pytest.approx(1 / 2)  # tp 1, gt 1, pred 2
    assert iou["d"] is None                  # union 0: absent from gt and prediction
    assert scores["miou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    assert scores["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert scores["num_pixels"] == 6 and isinstance(scores["num_pixels"], int)


def test_class_only_in_prediction_counts_with_iou_zero():
    cm = metrics.ConfusionMatrix(3).update([0, 0, 0, 0], [0, 0, 0, 1])
    scores = cm.scores()
    assert scores["per_class_iou"] == {"0": 0.75, "1": 0.0, "2": None}
    assert scores["miou"] == pytest.approx(0.375)
    assert scores["mean_class_accuracy"] == pytest.approx(0.75)  # only gt classes


def test_empty_matrix_scores_are_none():
    scores = metrics.segmentation_scores(np.zeros((2, 2), np.int64))
    assert scores["miou"] is None and scores["pixel_accuracy"] is None
    assert scores["mean_class_accuracy"] is None and scores["num_pixels"] == 0
    assert scores["per_class_iou"] == {"0": None, "1": None}


def test_majority_class_baseline_is_exact_from_row_sums():
    baseline = metrics.majority_class_baseline(HAND_CM, ["a", "b", "c", "d"])
    assert baseline["majority_class"] == "a"  # ground-truth counts 3, 2, 1, 0
    assert baseline["per_class_iou"] == {"a": 0.5, "b": 0.0, "c": 0.0, "d": None}
    assert baseline["miou"] == pytest.approx(0.5 / 3)
    assert baseline["pixel_accuracy"] == pytest.approx(0.5)
    assert baseline["mean_class_accuracy"] == pytest.approx(1 / 3)
    assert baseline["num_pixels"] == 6


def test_bad_inputs_raise_clear_errors():
    cm = metrics.ConfusionMatrix(4)
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="Prediction 4 is not a class index"):
        cm.update([0, 1], [0, 4])
    cm.update([255, 1], [9, 1])  # an ignored pixel's prediction is not checked
    with pytest.raises(ValueError, match=r"\(3, 3\).*4-class"):
        cm.add(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="3 class names for a 4-class"):
        metrics.segmentation_scores(HAND_CM, ["a", "b", "c"])
    with pytest.raises(ValueError, match="square"):
        metrics.segmentation_scores(np.zeros((2, 3)))


def _random_batch(seed, shape=(2, 9, 11), num_classes=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape)
    labels[rng.uniform(size=shape) < 0.2] = 255
    labels[rng.uniform(size=shape) < 0.05] = num_classes + 3  # outside [0, C)
    logits = rng.normal(size=shape + (num_classes,)).astype(np.float32)
    return labels, logits


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8])
def test_tf_confusion_matrix_equals_numpy(label_dtype):
    labels, logits = _random_batch(0)
    labels = labels.astype(label_dtype)
    expected = metrics.ConfusionMatrix(5).update(labels, logits.argmax(-1)).matrix
    from_logits = metrics.confusion_matrix_tf(labels, logits, 5, 255)
    from_predictions = tf.function(metrics.confusion_matrix_tf)(
        tf.constant(labels), tf.constant(logits.argmax(-1)), 5, 255)
    np.testing.assert_array_equal(from_logits.numpy(), expected)
    np.testing.assert_array_equal(from_predictions.numpy(), expected)
    assert expected.sum() > 0


def test_tf_confusion_matrix_rejects_wrong_class_count_and_bad_predictions():
    labels, logits = _random_batch(1)
    with pytest.raises(ValueError, match="outputs 5 classes.*num_classes=4"):
        metrics.confusion_matrix_tf(labels, logits, 4, 255)
    with pytest.raises(ValueError, match="rank"):
        metrics.confusion_matrix_tf(labels, logits[..., 0, 0], 5, 255)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a class index"):
        metrics.confusion_matrix_tf([0, 1], [0, 5], 5, 255)


def test_tf_confusion_matrix_summed_over_mirrored_replicas_equals_numpy():
    strategy = mirrored_strategy()
    labels, logits = _random_batch(2, shape=(4, 6, 7))
    dataset = tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(labels, logits):
        per_replica = strategy.run(metrics.confusion_matrix_tf, args=(labels, logits, 5))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    expected = metrics.ConfusionMatrix(5).update(labels, logits.argmax(-1)).matrix
    np.testing.assert_array_equal(step(*batch).numpy(), expected)
