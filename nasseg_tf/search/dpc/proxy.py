"""The DPC proxy task (Chen et al. 2018, §3.3): one cheap trial per candidate cell.

Every candidate cell trains only the DPC + 1×1 logits on cached backbone features
(:mod:`nasseg_tf.search.dpc.cache`; no backprop into the backbone), batch 8, poly
learning rate from 0.01, and is scored by its validation mIoU, early-stopping the
hopeless ones. :class:`ProxyConfig` is the trial recipe; :func:`run_proxy_trial` trains
and scores one cell on a cache.

Why a compact compiled step instead of :class:`~nasseg_tf.train.loop.TrainLoop`: a
trial is short and disposable, and thousands run per search. ``TrainLoop`` always
creates a checkpoint manager, restores from and saves to a model folder and opens a
TensorBoard writer (files and seconds per trial that the proxy never uses: a trial is
re-run, not resumed), and it has no way to stop a run from its ``eval_fn``, which early
stopping needs. The step itself *is* the project's: :func:`train_and_score` builds a
:class:`~nasseg_tf.train.segmentation.SegmentationTask` (masked cross-entropy, L2 weight
decay on kernels, SGD with momentum, DeepLab poly schedule) and compiles its
``train_step`` in one ``tf.function`` that also draws the batch, as ``TrainLoop`` does.

Example::

    result = run_proxy_trial("dpc_top1_cityscapes", cache, ProxyConfig(steps=300))
    result["miou"], result["history"]       # float, [(100, miou), (200, miou), (300, miou)]

The speed-up the cache buys is bounded by ``1 + t(backbone forward) / t(head step)``,
and a paper-sized head's training step (DPC forward + backward, logits upsampled to the
crop and the loss there) costs about as much as MobileNet-v2's forward, so caching
gives about 2× on CPU (``bench/README.md``); large atrous rates on small feature maps
are a big part of the head's cost (TensorFlow runs them as space-to-batch on a map
padded to the rate).
"""

import dataclasses
import math
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf.internals import releasing_custom_gradients
from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM
from nasseg_tf.layers.dpc import DensePredictionCell
from nasseg_tf.layers.resize import resize_bilinear
from nasseg_tf.progress import progress_bar
from nasseg_tf.search_space.dpc import load_dpc_cell
from nasseg_tf.train.metrics import (confusion_matrix_tf, majority_class_baseline,
                                     segmentation_scores)
from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate


# --------------------------------------------------------------------------------------
# The trial.


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """The proxy trial recipe (gin ``Proxy``; paper: 30K iterations, batch 8, poly LR
    from 0.01).

    Attributes:
      steps: training-step budget (the poly schedule decays over all of it, also
        when a trial stops early).
      batch_size: crops per step (paper: 8).
      learning_rate, end_learning_rate, power: DeepLab poly schedule
        ``lr · (1 − step/steps)^power``.
      momentum: SGD momentum.
      weight_decay: L2 on conv kernels, added to the loss (DeepLab: 4e-5).
      filters: DPC channels (paper: 256).
      output_stride: the features' output stride (rates × 16/OS); None: the cache's.
      dropout_rate: dropout on the DPC concatenation.
      bn_momentum: BN moving-average momentum of the DPC; None = ``min(0.9997,
        1 − 10/steps)`` (DeepLab's 0.9997 at the paper's budget; short budgets need
        faster averages or the evaluation would use barely-updated statistics).
      eval_fractions: intermediate checkpoints as fractions of ``steps``; the val mIoU
        is measured there (and at the end), and early stopping is decided there.
      stop_if_trivial: stop at a checkpoint where the mIoU is not above the
        majority-class predictor's mIoU (+ ``trivial_margin``) on val.
      trivial_margin: see ``stop_if_trivial``.
      eval_batch_size: val crops per evaluation batch.
      seed: head initialisation, dropout and batch order.
    """

    GIN_NAME = "Proxy"

    steps: int = 30000
    batch_size: int = 8
    learning_rate: float = 0.01
    end_learning_rate: float = 0.0
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 4e-5
    filters: int = 256
    output_stride: int = None
    dropout_rate: float = 0.1
    bn_momentum: float = None
    eval_fractions: tuple = (1 / 3, 2 / 3)
    stop_if_trivial: bool = True
    trivial_margin: float = 0.0
    eval_batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("Proxy: steps, batch_size and eval_batch_size must be >= 1")
        if any(not 0 < f < 1 for f in self.eval_fractions):
            raise ValueError(f"Proxy.eval_fractions must lie in (0, 1), got "
                             f"{self.eval_fractions}")

    def resolved_bn_momentum(self):
        if self.bn_momentum is not None:
            return float(self.bn_momentum)
        return min(BN_MOMENTUM, max(0.0, 1.0 - 10.0 / self.steps))

    def eval_steps(self):
        """The intermediate checkpoint steps (sorted, in ``[1, steps)``)."""
        steps = {int(round(f * self.steps)) for f in self.eval_fractions}
        return sorted(s for s in steps if 1 <= s < self.steps)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ProxyHead(keras.layers.Layer):
    """DPC → 1×1 logits (with bias) → bilinear resize to the label size.

    Args:
      cell: a :class:`~nasseg_tf.search_space.dpc.DPCCell`, its config or a published
        name (the layers take no file paths).
      num_classes: logits channels.
      output_size: ``(H, W)`` of the labels (the crop).
      filters, output_stride, dropout_rate, bn_momentum, bn_epsilon: of the
        :class:`~nasseg_tf.layers.dpc.DensePredictionCell`.
    """

    def __init__(self, cell, num_classes, output_size, filters=256, output_stride=16,
                 dropout_rate=0.1, bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.output_size = tuple(int(s) for s in output_size)
        self.dpc = DensePredictionCell(cell, filters=filters, output_stride=output_stride,
                                       dropout_rate=dropout_rate, bn_momentum=bn_momentum,
                                       bn_epsilon=bn_epsilon, name="dpc")
        self.logits = keras.layers.Conv2D(
            self.num_classes, 1, name="logits",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))

    def build(self, input_shape):
        self.dpc.build(input_shape)
        self.logits.build(tuple(input_shape[:3]) + (self.dpc.filters,))

    def call(self, x, training=None):
        y = self.logits(self.dpc(x, training=training))
        return resize_bilinear(y, self.output_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        dpc = self.dpc.get_config()
        config.update(cell=dpc["cell"], num_classes=self.num_classes,
                      output_size=list(self.output_size), filters=dpc["filters"],
                      output_stride=dpc["output_stride"], dropout_rate=dpc["dropout_rate"],
                      bn_momentum=dpc["bn_momentum"], bn_epsilon=dpc["bn_epsilon"])
        return config


def proxy_head(cell, num_classes, output_size, config, output_stride):
    """The trial's head layer for ``cell`` under ``config``."""
    return ProxyHead(cell, num_classes, output_size, filters=config.filters,
                     output_stride=output_stride, dropout_rate=config.dropout_rate,
                     bn_momentum=config.resolved_bn_momentum(), name="proxy_head")


def train_and_score(model_fn, train_dataset, val_dataset, num_classes, ignore_label,
                    config, should_stop=None, progress=False):
    """Trains ``model_fn()`` on ``train_dataset`` and scores it by val mIoU.

    The generic part of :func:`run_proxy_trial` (the benchmark reuses it with a model
    that runs a frozen backbone on images). One compiled step draws a batch and runs
    :meth:`SegmentationTask.train_step`; the val confusion matrix is one compiled pass.

    Early stopping, decided at each intermediate checkpoint (``config.eval_steps()``):
    first the built-in rule — with ``config.stop_if_trivial``, a mIoU not above the
    majority-class predictor's (computed exactly from the val label counts,
    :func:`~nasseg_tf.train.metrics.majority_class_baseline`) plus
    ``config.trivial_margin`` stops the trial (``stop_reason='trivial'``) — then
    ``should_stop(step, miou)`` (e.g. a tuner's "below the median of completed trials at
    this step"; ``stop_reason='should_stop'``). A non-finite loss ends the trial with
    mIoU 0 (``stop_reason='non_finite_loss'``). The reported ``miou`` is the last one
    measured (at the stopping checkpoint for a stopped trial).

    Returns:
      a JSON-ready dict: ``miou``, ``steps`` (steps trained), ``stopped_early``,
      ``stop_reason``, ``seconds`` (whole trial), ``history`` ([(step, miou), ...]),
      ``loss_history`` ([(step, mean loss since the previous checkpoint), ...]),
      ``trivial_miou``, ``build_seconds``, ``first_call_seconds`` (first step: trace +
      graph build + run), ``step_seconds_median`` (later steps), ``eval_seconds``,
      ``head_params``.

    A finished trial leaves nothing behind: its traced step's entry in TensorFlow's
    gradient registry, which would keep the step's graph alive until exit
    (tensorflow/tensorflow#97697), is dropped
    (:func:`~nasseg_tf.internals.releasing_custom_gradients`), so a worker's memory
    does not grow with the number of trials it has run.
    """
    with releasing_custom_gradients():
        return _train_and_score(model_fn, train_dataset, val_dataset, num_classes,
                                ignore_label, config, should_stop, progress)


def _train_and_score(model_fn, train_dataset, val_dataset, num_classes, ignore_label,
                     config, should_stop, progress):
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    learning_rate = make_learning_rate("poly", config.learning_rate, config.steps,
                                       config.end_learning_rate, config.power)
    task = SegmentationTask(model_fn, input_fn=None, learning_rate=learning_rate,
                            momentum=config.momentum, weight_decay=config.weight_decay,
                            ignore_label=ignore_label)
    task.build()
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    iterator = iter(train_dataset)

    # The iterator is an argument, not a capture: TensorFlow keeps every traced train
    # step's graph alive until its registry entry is dropped (see
    # nasseg_tf.train.loop.CompiledPart), and a graph that captured the iterator would
    # keep it, and its tf.data threads, as long.
    @tf.function
    def train_step(iterator):
        return task.train_step(step_var, next(iterator))["loss"]

    @tf.function
    def confusion():
        matrix = tf.zeros([num_classes, num_classes], tf.int64)
        for features, labels in val_dataset:
            logits = task.model(features, training=False)
            matrix += tf.cast(confusion_matrix_tf(labels, logits, num_classes,
                                                  ignore_label), tf.int64)
        return matrix

    build_seconds = time.perf_counter() - t_start
    checkpoints = set(config.eval_steps())
    bar = progress_bar(config.steps, unit_name="step",
                       stateful_metrics=["miou"]) if progress else None
    history, loss_history, step_times, pending = [], [], [], []
    trivial, miou, reason, eval_seconds = None, 0.0, None, 0.0
    step = 0
    for step in range(1, config.steps + 1):
        t0 = time.perf_counter()
        loss = float(train_step(iterator))
        step_times.append(time.perf_counter() - t0)
        if not math.isfinite(loss):
            reason, miou = "non_finite_loss", 0.0
            break
        pending.append(loss)
        values = [("loss", loss)]
        if step in checkpoints or step == config.steps:
            t0 = time.perf_counter()
            matrix = confusion().numpy()
            eval_seconds += time.perf_counter() - t0
            miou = segmentation_scores(matrix)["miou"] or 0.0
            if trivial is None:
                trivial = majority_class_baseline(matrix)["miou"] or 0.0
            history.append((step, miou))
            loss_history.append((step, float(np.mean(pending))))
            pending = []
            values.append(("miou", miou))
            if step < config.steps:
                if config.stop_if_trivial and miou <= trivial + config.trivial_margin:
                    reason = "trivial"
                elif should_stop is not None and should_stop(step, miou):
                    reason = "should_stop"
        if bar is not None:
            bar.update(step, values=values)
        if reason is not None:
            break
    return {
        "miou": float(miou),
        "steps": step,
        "stopped_early": reason is not None,
        "stop_reason": reason,
        "seconds": time.perf_counter() - t_start,
        "history": history,
        "loss_history": loss_history,
        "trivial_miou": trivial,
        "build_seconds": build_seconds,
        "first_call_seconds": step_times[0] if step_times else None,
        "step_seconds_median": (statistics.median(step_times[1:]) if len(step_times) > 1
                                else None),
        "eval_seconds": eval_seconds,
        "head_params": int(sum(int(np.prod(v.shape))
                               for v in task.model.trainable_variables)),
    }


def run_proxy_trial(cell, cache, config=None, should_stop=None, progress=False):
    """Trains DPC ``cell`` + logits on ``cache``'s features; scores it by val mIoU.

    The backbone is not involved: the model's input is the cached features (float16
    on disk, float32 in the step). Logits are upsampled bilinearly to the crop and
    trained with cross-entropy against the crop-resolution labels, the dataset's ignore
    label excluded. See :func:`train_and_score` for early stopping and the result.

    Args:
      cell: a :class:`~nasseg_tf.search_space.dpc.DPCCell`, its JSON config, a
        published name or a JSON path.
      cache: a :class:`FeatureCache` (built or loaded on first use).
      config: a :class:`ProxyConfig` (default: ``ProxyConfig()``).
      should_stop: optional ``(step, miou) -> bool`` asked at each intermediate
        checkpoint.
      progress: show a progress bar.

    Returns:
      the dict of :func:`train_and_score` plus ``cell`` (its JSON config).
    """
    config = ProxyConfig() if config is None else config
    cell = load_dpc_cell(cell)
    cache.build_or_load()
    stride = cache.output_stride
    if config.output_stride is not None and int(config.output_stride) != stride:
        raise ValueError(f"Proxy.output_stride={config.output_stride} but the cache's "
                         f"backbone features are at output stride {stride}")

    def model_fn():
        features = keras.Input(cache.feature_shape, name="features")
        head = proxy_head(cell, cache.num_classes, cache.crop_size, config, stride)
        return keras.Model(features, head(features), name="dpc_proxy")

    result = train_and_score(
        model_fn, cache.train_dataset(config.batch_size, seed=config.seed),
        cache.val_dataset(config.eval_batch_size), cache.num_classes,
        cache.ignore_label, config, should_stop=should_stop, progress=progress)
    result["cell"] = cell.to_config()
    return result


__all__ = ["ProxyConfig", "ProxyHead", "proxy_head", "run_proxy_trial", "train_and_score"]
