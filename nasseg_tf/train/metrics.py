"""Segmentation metrics from a confusion matrix: mIoU, pixel and class accuracy.

Everything derives from one integer confusion matrix ``cm`` of shape
``[num_classes, num_classes]``: ``cm[g, p]`` counts pixels whose ground truth is ``g``
and whose prediction is ``p`` (rows = ground truth, columns = prediction). Pixels
labelled ``ignore_label`` (or any value outside ``[0, num_classes)``) are not counted.

* :func:`confusion_matrix_tf` computes one batch's matrix in TensorFlow, inside a
  ``tf.function`` or ``strategy.run``; the caller sums it across replicas and batches.
* :class:`ConfusionMatrix` accumulates matrices exactly (numpy ``int64``) on the host.
* :func:`segmentation_scores` turns a matrix into the reported numbers, and
  :func:`majority_class_baseline` gives the scores of the trivial predictor.

The intersection-over-union of class ``c`` is
``IoU_c = cm[c, c] / (sum_p cm[c, p] + sum_g cm[g, c] - cm[c, c])`` (Everingham et al.,
"The PASCAL Visual Object Classes Challenge", IJCV 2010), and mIoU is its mean over
the classes that occur (see :func:`segmentation_scores`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf


class ConfusionMatrix:
    """Accumulates a ``[num_classes, num_classes]`` confusion matrix on the host.

    Counts are ``int64``, so a whole dataset of any realistic size is counted exactly.

    Example:
        >>> cm = ConfusionMatrix(num_classes=3)
        >>> cm.update([[0, 1, 255]], [[0, 2, 1]]).matrix.tolist()
        [[1, 0, 0], [0, 0, 1], [0, 0, 0]]

    Attributes:
        num_classes: Number of classes ``C``.
        ignore_label: Ground-truth value that is never counted.
        matrix: ``int64 [C, C]``; rows = ground truth, columns = prediction.
    """

    def __init__(self, num_classes: int, ignore_label: int = 255):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self) -> "ConfusionMatrix":
        """Sets every count to zero; returns ``self``."""
        self.matrix[:] = 0
        return self

    def update(self, labels, predictions) -> "ConfusionMatrix":
        """Counts one batch of label maps.

        Args:
            labels: Integer ground truth of any shape; ``ignore_label`` and values
                outside ``[0, num_classes)`` are skipped.
            predictions: Integer predicted classes, same shape as ``labels``.

        Returns:
            ``self``, so calls can be chained.

        Raises:
            ValueError: If the shapes differ, or a counted pixel's prediction is not a
                class index.
        """
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        if labels.shape != predictions.shape:
            raise ValueError(f"labels {labels.shape} and predictions "
                             f"{predictions.shape} differ in shape.")
        labels = labels.astype(np.int64).ravel()
        predictions = predictions.astype(np.int64).ravel()
        valid = _valid_mask(labels, self.num_classes, self.ignore_label)
        labels, predictions = labels[valid], predictions[valid]
        bad = (predictions < 0) | (predictions >= self.num_classes)
        if bad.any():
            raise ValueError(f"Prediction {int(predictions[bad][0])} is not a class index "
                             f"of a {self.num_classes}-class confusion matrix.")
        counts = np.bincount(labels * self.num_classes + predictions,
                             minlength=self.num_classes ** 2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        return self

    def add(self, matrix) -> "ConfusionMatrix":
        """Adds a precomputed matrix, e.g. from :func:`confusion_matrix_tf`.

        Raises:
            ValueError: If ``matrix`` is not ``[num_classes, num_classes]`` or has
                negative counts.
        """
        matrix = np.asarray(matrix)
        if matrix.shape != self.matrix.shape:
            raise ValueError(f"Confusion matrix of shape {matrix.shape} does not fit "
                             f"the {self.num_classes}-class accumulator "
                             f"{self.matrix.shape}.")
        if (matrix < 0).any():
            raise ValueError("Confusion matrix counts must be non-negative.")
        self.matrix += matrix.astype(np.int64)
        return self

    def scores(self, class_names: Optional[Sequence[str]] = None) -> Dict:
        """:func:`segmentation_scores` of the accumulated matrix."""
        return segmentation_scores(self.matrix, class_names)


def _valid_mask(labels, num_classes: int, ignore_label: int):
    """Pixels that count: a class index in ``[0, num_classes)`` that is not ignored."""
    return (labels >= 0) & (labels < num_classes) & (labels != ignore_label)


def confusion_matrix_tf(labels: tf.Tensor, logits_or_predictions: tf.Tensor,
                        num_classes: int, ignore_label: int = 255) -> tf.Tensor:
    """One batch's confusion matrix in TensorFlow (graph, ``tf.function``, replicas).

    Uses only static shapes (no boolean masking), so it also compiles with XLA.

    Args:
        labels: Integer ground truth ``[...]``; ``ignore_label`` and values outside
            ``[0, num_classes)`` are not counted.
        logits_or_predictions: Either scores ``[..., num_classes]`` (one more axis
            than ``labels``; the arg-max is taken) or integer predicted classes of the
            same shape as ``labels``. Given predictions must be class indices: an
            out-of-range value on a counted pixel fails an assertion.
        num_classes: Number of classes ``C``.
        ignore_label: Ground-truth value that is never counted.

    Returns:
        ``int32 [C, C]``, rows = ground truth, columns = prediction. ``int32`` holds
        any single batch (< 2**31 pixels); sum batches in ``int64``
        (:meth:`ConfusionMatrix.add`) and replicas with ``strategy.reduce``.

    Raises:
        ValueError: If the ranks do not fit, or the scores have a number of classes
            other than ``num_classes``.
    """
    labels = tf.convert_to_tensor(labels)
    scores = tf.convert_to_tensor(logits_or_predictions)
    given = scores.shape.rank == labels.shape.rank
    predictions = _predicted_classes(labels, scores, num_classes)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
    valid = _valid_mask(labels, num_classes, ignore_label)
    if given:  # the caller's integer predictions; an arg-max is always in range
        predictions = _assert_class_indices(predictions, valid, num_classes)
    cell = tf.where(valid, labels * num_classes + predictions, 0)
    counts = tf.math.unsorted_segment_sum(tf.cast(valid, tf.int32), cell,
                                          num_classes * num_classes)
    return tf.reshape(counts, [num_classes, num_classes])


def _assert_class_indices(predictions: tf.Tensor, valid: tf.Tensor,
                          num_classes: int) -> tf.Tensor:
    """``predictions``, after checking that every counted pixel holds a class index."""
    in_range = (predictions >= 0) & (predictions < num_classes)
    check = tf.debugging.Assert(
        tf.reduce_all(in_range | tf.logical_not(valid)),
        [f"confusion_matrix_tf: a prediction is not a class index in [0, {num_classes})."])
    with tf.control_dependencies([check]):
        return tf.identity(predictions)


def _predicted_classes(labels: tf.Tensor, scores: tf.Tensor,
                       num_classes: int) -> tf.Tensor:
    """Arg-max of scores with one more axis than labels, else the scores themselves."""
    labels_rank, scores_rank = labels.shape.rank, scores.shape.rank
    if labels_rank is None or scores_rank is None:
        raise ValueError("confusion_matrix_tf needs tensors of known rank.")
    if scores_rank == labels_rank + 1:
        channels = scores.shape[-1]
        if channels is not None and channels != num_classes:
            raise ValueError(f"The model outputs {channels} classes but the confusion "
                             f"matrix has num_classes={num_classes}.")
        return tf.argmax(scores, axis=-1, output_type=tf.int32)
    if scores_rank == labels_rank:
        if not scores.dtype.is_integer:
            raise ValueError(f"Predictions of the labels' rank must be integer class "
                             f"indices, got dtype {scores.dtype.name}.")
        return scores
    raise ValueError(f"labels of rank {labels_rank} need predictions of rank "
                     f"{labels_rank} or logits of rank {labels_rank + 1}, "
                     f"got rank {scores_rank}.")


def _ratio(numerator, denominator):
    """Elementwise ``numerator / denominator``, NaN where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean_or_none(values) -> Optional[float]:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def resolve_class_names(num_classes: int,
                        class_names: Optional[Sequence[str]] = None) -> List[str]:
    """The ``num_classes`` names to report: ``class_names``, or ``"0"``, ``"1"``, ...

    Raises:
        ValueError: If the number of names differs from ``num_classes`` or two
            names are equal.
    """
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a {num_classes}-class "
                         f"confusion matrix.")
    if len(set(class_names)) != num_classes:
        raise ValueError(f"Class names must be unique, got {class_names}.")
    return class_names


def _as_confusion_matrix(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"A confusion matrix is square [C, C], got shape {cm.shape}.")
    if (cm < 0).any():
        raise ValueError("Confusion matrix counts must be non-negative.")
    return cm.astype(np.int64)


def segmentation_scores(cm, class_names: Optional[Sequence[str]] = None) -> Dict:
    """The standard semantic segmentation scores of a confusion matrix.

    mIoU follows the DeepLab / Cityscapes convention: it averages ``IoU_c`` only over
    the classes that occur in the ground truth or in the prediction. A class with
    union 0 (absent from both) has no defined IoU; it is excluded from the mean and
    reported as ``None``, not as 0 or 1. Likewise ``mean_class_accuracy`` averages the
    per-class recall ``cm[c, c] / sum_p cm[c, p]`` over the classes present in the
    ground truth.

    Args:
        cm: Integer ``[C, C]`` matrix, rows = ground truth, columns = prediction.
        class_names: Optional ``C`` names (keys of ``per_class_iou``); default
            ``"0"``, ``"1"``, ...

    Returns:
        A JSON-ready dict: ``miou`` (float, None if nothing was counted),
        ``per_class_iou`` (``{name: float or None}``), ``pixel_accuracy``,
        ``mean_class_accuracy`` (floats, None if nothing was counted) and
        ``num_pixels`` (int, the pixels counted).

    Raises:
        ValueError: If ``cm`` is not a square non-negative matrix or the number of
            class names differs from ``C``.
    """
    cm = _as_confusion_matrix(cm)
    names = resolve_class_names(cm.shape[0], class_names)
    true_positives = np.diag(cm)
    ground_truth = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    iou = _ratio(true_positives, ground_truth + predicted - true_positives)
    num_pixels = int(cm.sum())
    return {
        "miou": _mean_or_none(iou),
        "per_class_iou": {name: (None if np.isnan(value) else float(value))
                          for name, value in zip(names, iou)},
        "pixel_accuracy": (float(true_positives.sum() / num_pixels) if num_pixels
                           else None),
        "mean_class_accuracy": _mean_or_none(_ratio(true_positives, ground_truth)),
        "num_pixels": num_pixels,
    }


def majority_class_baseline(cm, class_names: Optional[Sequence[str]] = None) -> Dict:
    """Scores of always predicting the most frequent ground-truth class.

    Computed exactly from the row sums of ``cm``: the baseline's own confusion matrix
    has the ground-truth counts in the majority class's column and zeros elsewhere.
    A model should beat these numbers by a clear margin.

    Args:
        cm: Integer ``[C, C]`` matrix of any predictor on the data (only its row
            sums, the ground-truth class frequencies, are used).
        class_names: Optional ``C`` class names.

    Returns:
        :func:`segmentation_scores` of the baseline plus ``majority_class`` (its
        name; None if ``cm`` counts no pixel).
    """
    cm = _as_confusion_matrix(cm)
    names = resolve_class_names(cm.shape[0], class_names)
    ground_truth = cm.sum(axis=1)
    baseline = np.zeros_like(cm)
    majority = int(np.argmax(ground_truth))
    baseline[:, majority] = ground_truth
    scores = segmentation_scores(baseline, names)
    scores["majority_class"] = names[majority] if ground_truth.sum() else None
    return scores
