"""Evaluation: multi-scale / flipped inference, mIoU over a dataset, result files.

Inference follows the DeepLab evaluation protocol (Chen et al., "Encoder-Decoder with
Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018, §4): the
image is resized by each scale in ``scales`` (and, with ``flip``, also mirrored left to
right), the model's logits are resized back to the input size (and flipped back), and
the softmax probabilities of all variants are averaged.

:func:`evaluate` runs that over a ``tf.data`` pipeline of ``(images, labels)`` batches
(e.g. :func:`nasseg_tf.data.build_dataset` with ``training=False``), on one device or
under a ``tf.distribute`` strategy, and returns the scores of
:func:`nasseg_tf.train.metrics.segmentation_scores` as a JSON-ready dict.

Example:
    >>> results = evaluate(model, build_dataset(pattern, num_classes=19,
    ...                                         training=False),
    ...                    num_classes=19, scales=(0.75, 1.0, 1.25), flip=True)
    >>> write_results_json(results, "run/eval/results.json")
"""

from __future__ import annotations

import json
import weakref
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf import fileio, visualize
from nasseg_tf.data.datasets import DatasetInfo
from nasseg_tf.progress import progress_bar
from nasseg_tf.train.metrics import ConfusionMatrix
from nasseg_tf.train.metrics import confusion_matrix_tf
from nasseg_tf.train.metrics import resolve_class_names

# --------------------------------------------------------------------------------------
# Multi-scale and flipped inference.
# --------------------------------------------------------------------------------------


def check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
    """``scales`` as a tuple of floats.

    Raises:
        ValueError: If ``scales`` is empty or holds a value that is not positive.
    """
    scales = tuple(float(scale) for scale in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty list of positive numbers, "
                         f"got {scales}.")
    return scales


def scaled_size(size: tf.Tensor, scale: float) -> tf.Tensor:
    """``round(scale * size)`` (at least 1) for an ``int32 [2]`` height-width tensor.

    Rounding is TensorFlow's (halves to even, as Python's ``round``).
    """
    scaled = tf.round(tf.cast(size, tf.float32) * scale)
    return tf.maximum(tf.cast(scaled, tf.int32), 1)


def _variant_probabilities(model: keras.Model, images: tf.Tensor, scale: float,
                           flipped: bool) -> tf.Tensor:
    """Softmax of the model on one resized (and maybe mirrored) copy of ``images``."""
    size = tf.shape(images)[1:3]
    inputs = tf.reverse(images, axis=[2]) if flipped else images
    if scale != 1.0:
        inputs = tf.image.resize(inputs, scaled_size(size, scale), method="bilinear")
    logits = tf.cast(model(inputs, training=False), tf.float32)
    if scale != 1.0:
        logits = tf.image.resize(logits, size, method="bilinear")
    if flipped:
        logits = tf.reverse(logits, axis=[2])
    return tf.nn.softmax(logits, axis=-1)


def average_probabilities(model: keras.Model, images: tf.Tensor,
                          scales: Sequence[float] = (1.0,),
                          flip: bool = False) -> tf.Tensor:
    """Mean softmax over all (scale, flip) variants; plain TF for any graph context.

    This is the body of :func:`predict_logits`, callable inside a ``tf.function`` or
    ``strategy.run``.

    Args:
        model: Maps float images ``[N, h, w, 3]`` to logits ``[N, h, w, C]``.
        images: ``[N, H, W, 3]`` in the model's input units (raw pixels for the zoo).
        scales: Resize factors; scale ``s`` feeds ``round(s*H) x round(s*W)`` images.
        flip: Also run every scale on the left-right mirrored image.

    Returns:
        ``float32 [N, H, W, C]`` probabilities.
    """
    scales = check_scales(scales)
    images = tf.cast(images, tf.float32)
    if images.shape.rank != 4:
        raise ValueError(f"images must be [N, H, W, channels], got shape {images.shape}.")
    variants = [(scale, flipped) for scale in scales
                for flipped in ((False, True) if flip else (False,))]
    total = _variant_probabilities(model, images, *variants[0])
    for scale, flipped in variants[1:]:
        total += _variant_probabilities(model, images, scale, flipped)
    return total / float(len(variants))


_PREDICT_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _predict_function(model: keras.Model, scales: Tuple[float, ...],
                      flip: bool) -> Callable:
    """One cached ``tf.function`` per (model, scales, flip), so calls reuse traces."""
    functions = _PREDICT_FUNCTIONS.setdefault(model, {})
    key = (scales, bool(flip))
    if key not in functions:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(reduce_retracing=True)
        def predict(images):
            return average_probabilities(model_ref(), images, scales, flip)

        functions[key] = predict
    return functions[key]


def predict_logits(model: keras.Model, images, scales: Sequence[float] = (1.0,),
                   flip: bool = False) -> tf.Tensor:
    """Multi-scale and left-right-flip inference, averaged in probability space.

    For each scale the images are resized bilinearly to ``round(scale*H) x
    round(scale*W)``, the model runs with ``training=False`` and its logits are
    resized back to ``H x W``; with ``flip`` each scale also runs on the mirrored
    images and its logits are mirrored back. Despite the name (kept for the API),
    the result is the mean of the variants' softmax probabilities, not logits:
    averaging probabilities is the DeepLab convention.

    Args:
        model: Maps float images ``[N, h, w, 3]`` of any size to logits
            ``[N, h, w, C]`` (every zoo model does).
        images: ``[N, H, W, 3]`` array or tensor (raw 0..255 pixels for the zoo).
        scales: Resize factors, e.g. ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)``.
        flip: Add the left-right mirrored variant of every scale.

    Returns:
        ``float32 [N, H, W, C]`` probabilities (they sum to 1 over ``C``).

    Raises:
        ValueError: For bad ``scales`` or images that are not 4-D.
    """
    scales = check_scales(scales)
    return _predict_function(model, scales, flip)(tf.convert_to_tensor(images, tf.float32))


# --------------------------------------------------------------------------------------
# Evaluation over a dataset.
# --------------------------------------------------------------------------------------


def _squeeze_labels(labels: tf.Tensor) -> tf.Tensor:
    """Accepts ``[N, H, W]`` and ``[N, H, W, 1]`` label maps."""
    if labels.shape.rank == 4 and labels.shape[-1] == 1:
        return labels[..., 0]
    return labels


def _batch_confusion(model, images, labels, num_classes: int, ignore_label: int,
                     scales: Tuple[float, ...], flip: bool) -> tf.Tensor:
    """``int32 [C, C]`` of one (per-replica) batch; an empty batch counts nothing.

    Replicas can receive empty batches (a global batch smaller than the number of
    replicas, or the last partial batch); models need not support batch size 0.
    """
    labels = _squeeze_labels(labels)

    def count():
        probabilities = average_probabilities(model, images, scales, flip)
        return confusion_matrix_tf(labels, probabilities, num_classes, ignore_label)

    def nothing():
        return tf.zeros([num_classes, num_classes], tf.int32)

    batch = images.shape[0]
    if batch is not None:
        return count() if batch > 0 else nothing()
    return tf.cond(tf.shape(images)[0] > 0, count, nothing)


def _make_step(model, num_classes: int, ignore_label: int, scales: Tuple[float, ...],
               flip: bool, strategy: Optional[tf.distribute.Strategy]) -> Callable:
    """``step(images, labels) -> (confusion int32 [C, C], number of images)``."""

    def replica_step(images, labels):
        confusion = _batch_confusion(model, images, labels, num_classes, ignore_label,
                                     scales, flip)
        return confusion, tf.shape(images)[0]

    if strategy is None:
        return tf.function(replica_step, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def distributed_step(images, labels):
        confusion, count = strategy.run(replica_step, args=(images, labels))
        total = tf.distribute.ReduceOp.SUM
        return (strategy.reduce(total, confusion, axis=None),
                strategy.reduce(total, count, axis=None))

    return distributed_step


def take_images(dataset: tf.data.Dataset, max_images: int) -> tf.data.Dataset:
    """The first ``max_images`` images of a batched ``(images, labels)`` dataset.

    Keeps the batching (the batch that reaches the limit is cut short) and stops
    reading the input once the limit is reached.
    """
    limit = tf.constant(int(max_images), tf.int32)

    def cut(seen, batch):
        images, labels = batch
        keep = tf.maximum(limit - seen, 0)
        return seen + tf.shape(images)[0], (images[:keep], labels[:keep])

    dataset = dataset.scan(tf.constant(0, tf.int32), cut)
    return dataset.take_while(lambda images, labels: tf.shape(images)[0] > 0)


def _check_dataset(dataset: tf.data.Dataset) -> None:
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"evaluate needs a dataset of (images, labels) batches, got "
                         f"elements {spec}.")


def _check_model_classes(model: keras.Model, num_classes: int) -> None:
    """Fails early when a model with known outputs predicts another number of classes.

    Models without symbolic outputs (subclassed) are checked when the step is traced.
    """
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return
    if not outputs or len(outputs) != 1:
        return
    channels = outputs[0].shape[-1]
    if channels is not None and channels != num_classes:
        raise ValueError(f"The model outputs {channels} classes but evaluate was given "
                         f"num_classes={num_classes}.")


def _progress_bar(progress: bool, max_images: Optional[int]):
    if not progress:
        return None
    return progress_bar(max_images, unit_name="image", stateful_metrics=["mIoU"])


def evaluate(model: keras.Model, dataset: tf.data.Dataset, num_classes: int, *,
             ignore_label: int = 255, class_names: Optional[Sequence[str]] = None,
             scales: Sequence[float] = (1.0,), flip: bool = False,
             max_images: Optional[int] = None, progress: bool = True,
             strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
    """Scores a model on a dataset: accumulates one confusion matrix over all pixels.

    Args:
        model: Maps float images ``[N, h, w, 3]`` to logits ``[N, h, w, C]``. Under a
            ``strategy``, build it inside ``strategy.scope()``.
        dataset: Batches ``(images float [N, H, W, 3], labels int [N, H, W])``;
            sizes may vary between batches. Pixels labelled ``ignore_label`` (e.g.
            padding of a padded batch) are not counted.
        num_classes: Number of classes ``C``; must equal the model's output channels.
        ignore_label: Ground-truth value that is never counted.
        class_names: Optional names for ``per_class_iou``.
        scales: Inference scales (:func:`predict_logits`).
        flip: Add left-right flipped inference.
        max_images: Evaluate only the first ``max_images`` images.
        progress: Show progress (:func:`nasseg_tf.progress.progress_bar`).
        strategy: Optional ``tf.distribute`` strategy: the dataset is split with
            ``experimental_distribute_dataset`` (the batch size is the global one)
            and the replicas' confusion matrices are summed.

    Returns:
        :func:`~nasseg_tf.train.metrics.segmentation_scores` (``miou``,
        ``per_class_iou``, ``pixel_accuracy``, ``mean_class_accuracy``,
        ``num_pixels``) plus ``num_images``, ``scales``, ``flip`` and
        ``confusion_matrix`` (``C`` lists of ``C`` ints, rows = ground truth; e.g.
        for :func:`~nasseg_tf.train.metrics.majority_class_baseline`).

    Raises:
        ValueError: For bad arguments, or if the model's number of output classes
            differs from ``num_classes`` (the message names both).
    """
    scales = check_scales(scales)
    names = resolve_class_names(num_classes, class_names)
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}.")
    _check_dataset(dataset)
    _check_model_classes(model, num_classes)
    if max_images is not None:
        dataset = take_images(dataset, max_images)
    step = _make_step(model, int(num_classes), int(ignore_label), scales, bool(flip),
                      strategy)
    if strategy is not None:
        dataset = strategy.experimental_distribute_dataset(dataset)

    confusion = ConfusionMatrix(num_classes, ignore_label)
    num_images = 0
    bar = _progress_bar(progress, max_images)
    for images, labels in dataset:
        batch_confusion, count = step(images, labels)
        confusion.add(batch_confusion.numpy())
        num_images += int(count)
        if bar is not None:
            miou = confusion.scores(names)["miou"]
            bar.update(num_images, values=[("mIoU", 0.0 if miou is None else miou)])
    if bar is not None:
        bar.update(num_images, finalize=True)

    results = confusion.scores(names)
    results.update(num_images=num_images, scales=list(scales), flip=bool(flip),
                   confusion_matrix=confusion.matrix.tolist())
    return results


# --------------------------------------------------------------------------------------
# Result files and pictures.
# --------------------------------------------------------------------------------------


def _json_default(value):
    """numpy / TensorFlow values as plain JSON types."""
    if isinstance(value, tf.Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")


def write_results_json(results: Dict, path: str) -> str:
    """Writes ``results`` as indented JSON with sorted keys, atomically.

    The text goes through :func:`nasseg_tf.fileio.atomic_write_text` (a temporary
    file flushed to disk and renamed over ``path``), so readers see the old file or the
    complete new one, never a half-written one. numpy and TensorFlow scalars and arrays
    are converted.

    Returns:
        ``path``.

    Raises:
        TypeError: If a value cannot be written as JSON (nothing is written then).
    """
    text = json.dumps(results, sort_keys=True, indent=2, default=_json_default) + "\n"
    fileio.atomic_write_text(path, text)
    return path


def _as_rgb_uint8(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}.")
    return np.clip(np.round(image.astype(np.float32)), 0, 255).astype(np.uint8)


def _as_label_map(name: str, values, size: Tuple[int, int]) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != size:
        raise ValueError(f"{name} must be [H, W] = {list(size)} like the image, "
                         f"got shape {values.shape}.")
    return values.astype(np.int64)


def save_prediction_pictures(image, label, prediction, info: DatasetInfo,
                             path: str) -> str:
    """Writes one PNG: image | ground truth over image | prediction over image.

    Args:
        image: ``[H, W, 3]`` pixels in 0..255 (float or integer).
        label: ``[H, W]`` ground truth; ignore pixels are drawn black.
        prediction: ``[H, W]`` predicted classes (e.g. the arg-max of
            :func:`predict_logits`).
        info: The dataset description whose palette colours the classes.
        path: Output ``.png`` path (written atomically).

    Returns:
        ``path``.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    image = _as_rgb_uint8(image)
    size = image.shape[:2]
    label = _as_label_map("label", label, size)
    prediction = _as_label_map("prediction", prediction, size)
    picture = visualize.side_by_side(
        image,
        visualize.overlay(image, info.colorize(label)),
        visualize.overlay(image, info.colorize(prediction)))
    return visualize.save_png(picture, path)
