"""The one training loop: ``tf.function`` + ``strategy.run``, for retraining and search.

Keras ``fit`` is not used: under ``MultiWorkerMirroredStrategy`` it fails with Keras 3
(keras-team/keras#20585), and the Auto-DeepLab search needs two optimizers and two data
streams per step. A :class:`Task` says what one step does; :class:`TrainLoop` does the
rest, the same way for every task:

* builds the task inside the strategy scope, restores the latest checkpoint (weights,
  optimizer slots, step, anything the task tracks) and resumes the input streams at
  the restored step, so a killed run continues exactly where it was;
* runs compiled steps, fetching the step's metrics to the host to check them: a
  non-finite loss stops the run with the last good checkpoint untouched;
* saves checkpoints every ``checkpoint_every`` steps and at the end, each only after
  checking the state it would write: every checkpointed float tensor (weights,
  optimizer slots) must be finite — a loss is computed *before* its step's update, so
  a finite loss does not prove the weights written after it finite — and the global
  norm of the model's trainable weights must not have grown more than ``max_weight_growth``
  times since the last verified state (the run's start or its last checkpoint): a
  blown-up update (a learning rate far too high) leaves finite but ruined weights, and
  a momentum slot scaled by the bad rate, from which no rerun can recover. A
  checkpoint therefore never holds NaN/Inf, and the checkpoint an error names as the
  last good one is one a rerun with a sane recipe can resume from. (TensorFlow writes the data files
  first, into ``ckpt-N_temp/``, and then atomically replaces the ``checkpoint`` index,
  so a kill mid-save leaves the previous checkpoint current; the next start removes
  what such a kill left behind.)
* writes TensorBoard scalars (the task's metrics, learning rate, steps/s) and shows a
  progress bar with the same figures;
* calls an optional ``eval_fn(step)`` every ``eval_every`` steps and at the end.
"""

import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf import fileio
from nasseg_tf.fileio import clean_stale_temps
from nasseg_tf.internals import releasing_custom_gradients
from nasseg_tf.progress import progress_bar
from nasseg_tf.train.checkpointing import (ARCHITECTURE_ITEM, architecture_variable,
                                           check_architecture)


class DivergedError(FloatingPointError):
    """Training diverged; the message names the last good (verified) checkpoint."""


class NonFiniteLossError(DivergedError):
    """The loss or the weights became NaN or infinite."""


def _float_variables(items):
    """``[(name, variable)]`` of the float variables in checkpoint ``items``."""
    out = []
    for group, value in items.items():
        entries = value.items() if isinstance(value, dict) else [("", value)]
        for path, var in entries:
            if isinstance(var, (tf.Variable, keras.Variable)) and tf.as_dtype(
                    var.dtype).is_floating:
                out.append((f"{group}/{path}".rstrip("/"), var))
    return out


def remove_interrupted_saves(directory):
    """Removes what a kill during ``CheckpointManager.save`` leaves in ``directory``.

    That is ``ckpt-N_temp/`` staging folders and the data/index files of checkpoints
    newer than the one the ``checkpoint`` state file names (a save is complete only
    once the state file names it). Returns the removed paths.
    """
    if not fileio.isdir(directory):
        return []
    latest = tf.train.latest_checkpoint(directory)
    latest_step = int(latest.rsplit("-", 1)[1]) if latest else -1
    removed = []
    for name in fileio.listdir(directory):
        path = os.path.join(directory, name)
        match = re.fullmatch(r"ckpt-(\d+)(_temp|\.index|\.data-\d+-of-\d+)", name)
        if not match:
            continue
        if match.group(2) == "_temp" or int(match.group(1)) > latest_step:
            fileio.remove_tree(path, ignore_errors=True)
            removed.append(path)
    return removed


class Task:
    """What the loop trains. Subclasses implement every method below.

    ``build`` runs inside ``strategy.scope()``; ``train_step`` runs inside
    ``strategy.run`` (one call per replica) and returns a dict of scalar tensors that
    the loop averages over replicas (it must contain ``loss``).
    """

    def build(self):
        raise NotImplementedError

    def checkpoint_items(self):
        """Trackables to checkpoint, e.g. ``{"model": ..., "optimizer": ...}``."""
        raise NotImplementedError

    def make_inputs(self, strategy, start_step):
        """Distributed datasets (a tuple) positioned at ``start_step``."""
        raise NotImplementedError

    def train_step(self, step, *batches, phase=None):
        raise NotImplementedError

    def phase(self, step):
        """A hashable naming the kind of step ``step`` is (default: one kind).

        A task can change what a step does (e.g. architecture updates only after a
        warm-up) by returning different phases, without a ``tf.cond`` around optimizer
        updates, which cross-replica updates do not allow.
        """
        return None

    def step_parts(self, phase):
        """The compiled pieces one step of ``phase`` runs, in order.

        Returns ``((part, inputs), ...)``: ``part`` is passed to :meth:`train_step` as
        ``phase=part`` and ``inputs`` lists which of :meth:`make_inputs`' datasets the
        part draws one batch from (``None``: all of them). The loop compiles one
        ``tf.function`` per part name and reuses it in every phase listing it, so e.g.
        a search's weight step is traced once, not once per phase. Default: one part,
        the phase itself, drawing from every dataset.
        """
        return ((phase, None),)

    def learning_rates(self, step):
        """``{name: float}`` learning rates at ``step`` (for display and summaries)."""
        return {}

    def architecture(self):
        """A JSON-able description of what is trained, or None.

        Stored in every checkpoint; resuming from a checkpoint of another architecture
        then fails naming the difference instead of silently restoring the weights
        that happen to match (:func:`~nasseg_tf.train.checkpointing.check_architecture`).
        """
        return None


class CompiledPart:
    """A compiled step (a ``tf.function``) bound to the input iterators it draws from.

    The iterators are passed to the function as arguments, never captured by its graph.
    TensorFlow keeps the graph of every traced training step alive (the optimizer's
    cross-replica gradient sum registers a ``custom_gradient`` whose closure holds the
    graph in a global registry; tensorflow/tensorflow#97697) — until the process exits,
    unless the entry is dropped, as :meth:`TrainLoop.run` does when it ends. A graph
    that captured an iterator would keep it, and its tf.data autotuning thread, alive
    too, and destroying such iterators at interpreter exit waited for those threads: a
    tool that had run several training loops took minutes to exit.
    """

    def __init__(self, function, iterators):
        self.function = function
        self.iterators = tuple(iterators)

    def __call__(self):
        return self.function(*self.iterators)

    def get_concrete_function(self):
        return self.function.get_concrete_function(*self.iterators)


class TrainLoop:
    """Runs a :class:`Task` for ``total_steps`` steps under ``strategy``.

    Args:
      task: the :class:`Task`.
      strategy: a ``tf.distribute.Strategy``.
      model_dir: checkpoints go to ``model_dir/checkpoints``, summaries to
        ``model_dir/train``.
      total_steps: the step count at which training ends (a resumed run trains the rest).
      checkpoint_every: steps between checkpoints (0 = only at the end).
      summary_every: steps between TensorBoard scalar summaries.
      eval_fn: optional ``callable(step) -> dict`` run every ``eval_every`` steps and
        at the end; its float values go to TensorBoard under ``eval/``.
      max_to_keep: checkpoints kept.
      progress: show a progress bar.
      is_chief: only the chief writes summaries and keeps checkpoints (other workers
        write to a scratch folder, as multi-worker checkpointing requires).
      max_weight_growth: a checkpoint is refused (:class:`DivergedError`) when the
        global norm of the task's trainable ``model`` weights (all trainable float
        checkpoint variables if it has no ``model`` item; batch-norm statistics follow
        the data and are not counted) exceeds this multiple of its value at the last
        verified state; 0 disables the check. Healthy training changes the norm by
        percents between checkpoints; a diverged step by orders of magnitude.
    """

    def __init__(self, task, strategy, model_dir, total_steps, checkpoint_every=500,
                 summary_every=50, eval_fn=None, eval_every=0, max_to_keep=3,
                 progress=True, is_chief=True, max_weight_growth=100.0):
        self.task = task
        self.strategy = strategy
        self.model_dir = model_dir
        self.total_steps = int(total_steps)
        self.checkpoint_every = int(checkpoint_every)
        self.summary_every = max(1, int(summary_every))
        self.eval_fn = eval_fn
        self.eval_every = int(eval_every)
        self.max_to_keep = int(max_to_keep)
        self.progress = progress
        self.is_chief = is_chief
        self.max_weight_growth = float(max_weight_growth)
        self.history = []

    # ------------------------------------------------------------------------------
    def _checkpoint_dir(self):
        if self.is_chief:
            return os.path.join(self.model_dir, "checkpoints")
        worker = self.strategy.cluster_resolver.task_id
        return os.path.join(self.model_dir, "checkpoints_workers", f"worker_{worker}")

    def _setup(self):
        with self.strategy.scope():
            self.task.build()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        items = self.task.checkpoint_items()
        remove_interrupted_saves(self._checkpoint_dir())
        architecture = self.task.architecture()
        extra = {}
        if architecture is not None:
            latest = tf.train.latest_checkpoint(self._checkpoint_dir())
            if latest:
                check_architecture(latest, architecture)
            extra[ARCHITECTURE_ITEM] = architecture_variable(architecture)
        self.checkpoint = tf.train.Checkpoint(step=self.step, **items, **extra)
        if self.is_chief:  # e.g. a model.keras temporary of a killed run
            clean_stale_temps(self.model_dir)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=self.max_to_keep)
        self._checked = _float_variables(items)
        checked_vars = [v for _, v in self._checked]
        normed = {id(v) for _, v in _float_variables(
            {"model": items["model"]} if "model" in items else items)
                  if getattr(v, "trainable", True)}
        normed_rows = [i for i, v in enumerate(checked_vars) if id(v) in normed]

        def health():
            """(finite per checked variable, global norm of the model's weights).

            Eager, not a tf.function: with thousands of variables (the search
            supernet has ~2,500 weights and as many optimiser slots) tracing and
            optimising the graph took ~10 s at every start, the eager sums ~0.3 s.
            A variable's sum of squares is finite unless it holds a non-finite value
            (or one beyond ~1.8e19, whose square overflows): those few are checked
            element by element.
            """
            sums = tf.stack([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                             for v in checked_vars]).numpy()
            finite = np.isfinite(sums)
            for row in np.flatnonzero(~finite):
                finite[row] = bool(tf.reduce_all(tf.math.is_finite(checked_vars[row])))
            return finite, float(np.sqrt(np.sum(sums[normed_rows], dtype=np.float64)))

        self._health = health
        self._reference_norm = health()[1] if checked_vars else 0.0
        self.restored_from = self.manager.restore_or_initialize()
        start = int(self.step.numpy())
        if start > self.total_steps:
            raise ValueError(f"the checkpoint in {self.manager.directory} is at step "
                             f"{start}, past total_steps={self.total_steps}")
        return start

    def compile_part(self, iterators, part, inputs=None):
        """One compiled step running ``task.train_step(step, *batches, phase=part)``.

        It draws one batch from each iterator listed in ``inputs`` (None: all) and
        returns the replica-averaged outputs; it does not advance the step counter.
        Returns a :class:`CompiledPart` (call it with no arguments).
        """
        task, strategy, step_var = self.task, self.strategy, self.step
        chosen = tuple(iterators) if inputs is None else tuple(iterators[i] for i in inputs)

        def replica_step(step, *batches):
            return task.train_step(step, *batches, phase=part)

        # No AutoGraph: a step is plain TensorFlow calls (the supernet's loop is an
        # explicit keras.ops.fori_loop), and converting every call on the way cost
        # 10-16% of the trace (bench/README.md: the supernet's first call).
        @tf.function(autograph=False)
        def train_part(*part_iterators):
            batches = tuple(next(it) for it in part_iterators)
            outputs = strategy.run(replica_step, args=(step_var,) + batches)
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in outputs.items()}

        return CompiledPart(train_part, chosen)

    def _run_step(self, iterators, phase, compiled):
        """Runs every part of one step; returns (metrics as floats, first call?)."""
        first_call = False
        metrics = {}
        for part, inputs in self.task.step_parts(phase):
            if part not in compiled:
                compiled[part] = self.compile_part(iterators, part, inputs)
                first_call = True
            metrics.update({k: float(v) for k, v in compiled[part]().items()})
        self.step.assign_add(1)
        return metrics, first_call

    def _save_checked(self, step, last_good):
        """Saves a checkpoint if the state passes the checks (see the module), else raises."""
        last = last_good or "none (no checkpoint was written yet)"
        advice = ("fix the cause (learning rate, data) and rerun the same command to "
                  "resume from it.")
        if self._checked:
            finite, norm = self._health()
            bad = [name for (name, _), ok in zip(self._checked, finite) if not ok]
            if bad:
                raise NonFiniteLossError(
                    f"non-finite values in {len(bad)} of {len(self._checked)} tensors "
                    f"after step {step} (e.g. {', '.join(bad[:3])}); no checkpoint was "
                    f"written for it. The last good checkpoint is {last}; {advice}")
            growth = norm / self._reference_norm if self._reference_norm else 1.0
            if self.max_weight_growth and growth > self.max_weight_growth:
                raise DivergedError(
                    f"training diverged: the weights' norm grew {growth:.3g}x (limit "
                    f"max_weight_growth={self.max_weight_growth:g}) by step {step}; no "
                    f"checkpoint was written for it. The last good checkpoint is {last}; "
                    f"{advice}")
            self._reference_norm = float(norm)
        return self.manager.save(checkpoint_number=step)

    # ------------------------------------------------------------------------------
    def run(self):
        """Trains to ``total_steps``; returns the last step's metrics (floats).

        The compiled steps' entries in TensorFlow's gradient registry are dropped when
        the run ends (:func:`~nasseg_tf.internals.releasing_custom_gradients`), so a
        process that runs several loops (a demo, a re-ranking, a random baseline) does
        not keep every finished loop's graphs (tensorflow/tensorflow#97697).
        """
        with releasing_custom_gradients():
            return self._run()

    def _run(self):
        start = self._setup()
        writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
                  if self.is_chief else tf.summary.create_noop_writer())
        if start == self.total_steps:
            return {"step": start, "resumed_from": self.restored_from}
        inputs = self.task.make_inputs(self.strategy, start)
        iterators = tuple(iter(d) for d in inputs)
        compiled = {}
        bar = (progress_bar(self.total_steps, unit_name="step",
                            stateful_metrics=["lr", "steps/s"])
               if self.progress and self.is_chief else None)
        if bar is not None and start:
            bar.update(start)
        last_good = self.manager.latest_checkpoint
        metrics = {}
        tic = time.perf_counter()
        for step in range(start + 1, self.total_steps + 1):
            t0 = time.perf_counter()
            metrics, first_call = self._run_step(iterators, self.task.phase(step - 1),
                                                 compiled)
            elapsed = time.perf_counter() - t0
            if first_call:
                metrics["first_call_seconds"] = elapsed
            bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
            if bad:
                raise NonFiniteLossError(
                    f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step "
                    f"{step}; training stopped. The last good checkpoint is "
                    f"{last_good or 'none (no checkpoint was written yet)'}; fix the cause "
                    "(learning rate, data) and rerun the same command to resume from it.")
            rates = self.task.learning_rates(step - 1)
            steps_per_sec = 1.0 / max(elapsed, 1e-9)
            if bar is not None:
                bar.update(step, values=[(k, v) for k, v in metrics.items()
                                         if k != "first_call_seconds"]
                           + [(k, v) for k, v in rates.items()]
                           + [("steps/s", steps_per_sec)])
            if step % self.summary_every == 0 or step == self.total_steps:
                with writer.as_default(step=step):
                    for k, v in {**metrics, **rates}.items():
                        tf.summary.scalar(f"train/{k}", v)
                    tf.summary.scalar("train/steps_per_sec", steps_per_sec)
            self.history.append({"step": step, **metrics})
            is_last = step == self.total_steps
            if is_last or (self.checkpoint_every and step % self.checkpoint_every == 0):
                last_good = self._save_checked(step, last_good)
            if self.eval_fn is not None and (is_last or (
                    self.eval_every and step % self.eval_every == 0)):
                scores = self.eval_fn(step)
                with writer.as_default(step=step):
                    for k, v in scores.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            tf.summary.scalar(f"eval/{k}", v)
                metrics.update({f"eval_{k}": v for k, v in scores.items()
                                if isinstance(v, (int, float))})
        writer.flush()
        metrics["step"] = self.total_steps
        metrics["seconds"] = time.perf_counter() - tic
        return metrics
