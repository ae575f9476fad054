"""Supervised segmentation training as a :class:`~nasseg_tf.train.loop.Task`."""

import keras
import tensorflow as tf

from nasseg_tf.layers.cell import TRAINING_PROGRESS
from nasseg_tf.train.checkpointing import checkpoint_items
from nasseg_tf.train.loop import Task
from nasseg_tf.train.losses import l2_regularization, masked_cross_entropy


def make_learning_rate(schedule, learning_rate, total_steps, end_learning_rate=0.0,
                       power=0.9, warmup_steps=0):
    """A Keras learning-rate schedule by name: ``poly`` (DeepLab), ``cosine``, ``constant``.

    ``poly``: ``lr · (1 − step/total)^power`` down to ``end_learning_rate``.
    ``cosine``: from ``lr`` to ``end_learning_rate``. Optional linear warm-up.
    """
    decay_steps = max(1, int(total_steps) - int(warmup_steps))
    if schedule == "poly":
        base = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, decay_steps, end_learning_rate=end_learning_rate, power=power)
    elif schedule == "cosine":
        base = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps, alpha=end_learning_rate / learning_rate)
    elif schedule == "constant":
        return float(learning_rate) if not warmup_steps else _Warmup(
            lambda step: learning_rate, learning_rate, warmup_steps)
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: "
                         "poly, cosine, constant")
    return _Warmup(base, learning_rate, warmup_steps) if warmup_steps else base


class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then ``after(step - warmup)``."""

    def __init__(self, after, peak, warmup_steps):
        self.after, self.peak, self.warmup_steps = after, float(peak), int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm,
                               self.after(step - self.warmup_steps))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


class SegmentationTask(Task):
    """Trains a segmenter with cross-entropy (ignore label) + L2 weight decay.

    Args:
      model_fn: ``() -> keras.Model`` (raw pixels in, logits at input size out).
      input_fn: ``(input_context, start_batch) -> tf.data.Dataset`` of per-replica
        batches ``(images, labels)``.
      learning_rate: a float or Keras schedule.
      momentum: SGD momentum (DeepLab: 0.9).
      weight_decay: L2 coefficient on conv kernels (DeepLab: 4e-5), added to the loss.
      ignore_label: label excluded from the loss.
      loss_scale: wrap the optimizer in a ``LossScaleOptimizer`` (float16 training).
      total_steps: the run's length. Before each step, every scalar variable of the
        model named ``training_progress`` (layers with a schedule, e.g. scheduled drop
        path) is set to ``step / total_steps``.
      architecture: JSON-able description of the model for checkpoint fingerprints
        (:meth:`Task.architecture`), or None.
      init_fn: optional ``init_fn(model)`` run once the model is built (a warm start,
        :func:`~nasseg_tf.train.warm_start.warm_start`); a resumed run's checkpoint
        then overwrites what it set.
    """

    def __init__(self, model_fn, input_fn, learning_rate, momentum=0.9,
                 weight_decay=4e-5, ignore_label=255, loss_scale=False, total_steps=None,
                 architecture=None, init_fn=None):
        self.model_fn = model_fn
        self.input_fn = input_fn
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.ignore_label = ignore_label
        self.loss_scale = loss_scale
        self.total_steps = total_steps
        self._architecture = architecture
        self.init_fn = init_fn
        self.model = None
        self.optimizer = None
        self.progress_variables = []

    def build(self):
        self.model = self.model_fn()
        if self.init_fn is not None:
            self.init_fn(self.model)
        optimizer = keras.optimizers.SGD(self.learning_rate, momentum=self.momentum)
        if self.loss_scale:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        self.progress_variables = [v for v in self.model.non_trainable_variables
                                   if v.name == TRAINING_PROGRESS]
        if self.progress_variables and not self.total_steps:
            raise ValueError("the model has scheduled layers (training_progress "
                             "variables): SegmentationTask needs total_steps")

    def checkpoint_items(self):
        return checkpoint_items(model=self.model, optimizer=self.optimizer)

    def architecture(self):
        return self._architecture

    def make_inputs(self, strategy, start_step):
        return (strategy.distribute_datasets_from_function(
            lambda ctx: self.input_fn(ctx, start_step)),)

    def train_step(self, step, batch, phase=None):
        images, labels = batch
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.progress_variables:
            progress = tf.cast(step, tf.float32) / float(self.total_steps)
            for variable in self.progress_variables:
                variable.assign(progress)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            loss = masked_cross_entropy(labels, logits, self.ignore_label)
            reg = l2_regularization(variables, self.weight_decay)
            # Keras optimizers sum gradients over replicas: scale to a mean.
            total = (loss + reg) / replicas
            if self.loss_scale:
                total = self.optimizer.scale_loss(total)
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return {"loss": loss, "total_loss": loss + reg}

    def learning_rates(self, step):
        lr = self.learning_rate
        return {"lr": float(lr(step)) if callable(lr) else float(lr)}
