"""Auto-DeepLab bilevel search on the one training loop (Liu et al. 2019, §4.1).

First-order alternation (DARTS-style): the training set is split into halves trainA and
trainB (fixed record subsets); each step updates the network weights w on a trainA
batch and, after ``warmup_steps``, the architecture parameters α, β on a trainB batch.

* w: SGD, momentum 0.9, cosine learning rate 0.025 → 0.001, weight decay 3e-4;
* α, β: Adam, learning rate 3e-3, weight decay 1e-3.

Weight decay is added to the gradient (``g + wd · w`` before the optimizer's update), as
the PyTorch optimizers of the paper's search code do (``weight_decay`` of
``torch.optim.SGD`` / ``torch.optim.Adam``: coupled L2, which goes through the momentum
and Adam's moments), not Keras' decoupled ``weight_decay``. Besides fidelity this keeps
the compiled weight step small: Keras' decoupled decay re-evaluates the learning-rate
schedule once per variable (~14k extra graph nodes in the 65², L = 4 weight step).

The warm-up is a *phase* of the loop (see ``Task.phase``): steps before it run only the
compiled weight step, later steps the same weight step and then a compiled architecture
step (``Task.step_parts``), so α and β provably stay at their initial values during
warm-up and the weight step is traced once. trainB batches are drawn only by
architecture steps. Every ``decode_every`` steps (and at the end)
the current α/β are decoded (top-2 + argmax cell, Viterbi path) and written to
``genotype.json`` (the format the zoo reads), with PNG pictures of the cell and of the
path on the trellis and α/β entropies in TensorBoard.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from nasseg_tf import fileio, runfiles
from nasseg_tf.counting import format_count
from nasseg_tf.data.inputs import DataConfig, train_input_fn
from nasseg_tf.layers.common import synchronized_batch_norm
from nasseg_tf.search.autodeeplab import cost, decode
from nasseg_tf.search.autodeeplab import plots
from nasseg_tf.search.autodeeplab.batched_cell import check_search_options
from nasseg_tf.search.autodeeplab.supernet import AutoDeepLabSupernet
from nasseg_tf.train.checkpointing import checkpoint_items
from nasseg_tf.train.experiment import make_run_strategy
from nasseg_tf.train.loop import Task, TrainLoop
from nasseg_tf.train.losses import masked_cross_entropy
from nasseg_tf.train.optimizers import FusedSGD


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """The search network (gin ``Supernet``; see :class:`AutoDeepLabSupernet`)."""

    GIN_NAME = "Supernet"

    num_layers: int = 12
    filter_multiplier: int = 8
    num_blocks: int = 5
    stack_sources: bool = True
    remat: bool = False
    affine: bool = False
    cell_type: str = "batched"
    loop_layers: bool = True
    seed: int = 0
    partial_channels: int = 1
    atrous_op: str = "regular"

    def __post_init__(self):
        # Checked here, before a run folder is written (not at the supernet's build).
        try:
            check_search_options(self.filter_multiplier, self.partial_channels,
                                 self.atrous_op)
        except ValueError as e:
            raise ValueError(f"Supernet.{e} (Supernet.filter_multiplier = "
                             f"{self.filter_multiplier})") from None

    def build(self, num_classes):
        return AutoDeepLabSupernet(num_classes, name="supernet",
                                   **dataclasses.asdict(self))

    def architecture(self, num_classes):
        """What a search checkpoint's fingerprint records: the fields that decide the
        variables (``stack_sources``, ``remat``, ``cell_type`` and ``loop_layers`` compute
        the same function with the same variables, so a search may resume with them
        changed)."""
        return {"supernet": {k: getattr(self, k) for k in (
            "num_layers", "filter_multiplier", "num_blocks", "affine")},
            "num_classes": int(num_classes),
            # The search options change the variables; recorded when not the default
            # (fingerprints of earlier searches stay valid).
            **{k: getattr(self, k) for k, default in (
                ("partial_channels", 1), ("atrous_op", "regular"))
               if getattr(self, k) != default}}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Search schedule (gin ``Search``; paper, Cityscapes: 40 epochs, α/β from epoch 20,
    batch 2, 321²).

    ``sync_batch_norm``: the supernet's batch norms use global-batch statistics under a
    multi-replica strategy (with batch 2 over 2 replicas, each would otherwise see one
    crop).

    Cost-aware search (:mod:`nasseg_tf.search.autodeeplab.cost`): with ``cost_target``
    (Multiply-Adds of the derived network for one image) the architecture loss adds
    ``cost_weight · penalty(E[cost])``, ``cost_penalty`` naming the form
    (:data:`~nasseg_tf.search.autodeeplab.cost.PENALTIES`: ``relative`` =
    relu(E/target − 1), ``log_ratio`` = relu(log(E/target))). The derived network is
    the zoo's (ASPP and decoder included) at ``cost_filter_multiplier`` (None: the
    supernet's F), ``cost_input_size`` (None: ``crop_size``) and
    ``cost_aspp_filters`` / ``cost_decoder_filters`` (the zoo's 256): set them to the
    retraining's model. ``cost_edge_temperature`` is the soft top-2's τ. The expected cost is logged at every architecture step and
    every decode (with or without a target), and every decode records the decoded
    network's real Multiply-Adds (the counter on the derived model).

    ``fused_sgd`` (default): the weights' SGD updates each variable with one op
    (:class:`~nasseg_tf.train.optimizers.FusedSGD`, the same arithmetic, variables and
    checkpoints as Keras' SGD): a smaller compiled weight step that starts sooner;
    False: Keras' own SGD.
    """

    GIN_NAME = "Search"

    steps: int = 1000
    warmup_steps: int = 500
    batch_size: int = 2
    crop_size: tuple = (321, 321)
    base_scale: float = 1.0
    min_scale: float = 1.0
    max_scale: float = 1.0
    scale_step: float = None
    weight_learning_rate: float = 0.025
    weight_end_learning_rate: float = 0.001
    weight_momentum: float = 0.9
    weight_decay: float = 3e-4
    fused_sgd: bool = True
    arch_learning_rate: float = 3e-3
    arch_weight_decay: float = 1e-3
    strategy: str = "default"
    num_cpu_devices: int = 2
    num_gpus: int = None
    sync_batch_norm: bool = False
    checkpoint_every: int = 100
    max_to_keep: int = 3
    decode_every: int = 100
    summary_every: int = 10
    shuffle_buffer: int = 256
    seed: int = 0
    cost_target: float = None
    cost_weight: float = 1.0
    cost_penalty: str = "relative"
    cost_edge_temperature: float = 0.1
    cost_filter_multiplier: int = None
    cost_input_size: tuple = None
    cost_aspp_filters: int = 256
    cost_decoder_filters: int = 256

    def cost_model(self, supernet, num_classes):
        """The :class:`~nasseg_tf.search.autodeeplab.cost.DerivedCostModel` of a search;
        None for a trellis too short for the derived network (its decoder reads cell 2)
        when no ``cost_target`` asks for one."""
        if supernet.num_layers <= cost.LOW_LEVEL_CELL and self.cost_target is None:
            return None
        return cost.DerivedCostModel(
            supernet.num_layers, self.cost_filter_multiplier or supernet.filter_multiplier,
            tuple(self.cost_input_size or self.crop_size), int(num_classes),
            num_blocks=supernet.num_blocks, aspp_filters=self.cost_aspp_filters,
            decoder_filters=self.cost_decoder_filters,
            edge_temperature=self.cost_edge_temperature)


class AutoDeepLabSearchTask(Task):
    """One search step: a weight update on trainA, then (after warm-up) α/β on trainB."""

    def __init__(self, supernet_fn, input_fn_a, input_fn_b, cfg, ignore_label=255,
                 architecture=None, cost_model=None):
        self.supernet_fn = supernet_fn
        self.cost_model = cost_model
        self._architecture = architecture
        self.input_fn_a = input_fn_a
        self.input_fn_b = input_fn_b
        self.cfg = cfg
        self.ignore_label = ignore_label

    def build(self):
        cfg = self.cfg
        self.model = self.supernet_fn()
        self.model.build((None, None, None, 3))
        self.weight_lr = keras.optimizers.schedules.CosineDecay(
            cfg.weight_learning_rate, max(1, cfg.steps),
            alpha=cfg.weight_end_learning_rate / cfg.weight_learning_rate)
        sgd = FusedSGD if cfg.fused_sgd else keras.optimizers.SGD
        self.weight_optimizer = sgd(
            self.weight_lr, momentum=cfg.weight_momentum, name="weight_sgd")
        self.weight_optimizer.build(self.model.weight_variables)
        self.arch_optimizer = keras.optimizers.Adam(cfg.arch_learning_rate,
                                                    name="arch_adam")
        self.arch_optimizer.build(self.model.arch_variables)

    def checkpoint_items(self):
        return checkpoint_items(model=self.model, weight_optimizer=self.weight_optimizer,
                                arch_optimizer=self.arch_optimizer)

    def architecture(self):
        return self._architecture

    def make_inputs(self, strategy, start_step):
        # trainA feeds every step; trainB only the architecture steps after the warm-up,
        # so its position is the number of architecture steps taken so far.
        starts = (start_step, max(0, start_step - self.cfg.warmup_steps))
        return tuple(strategy.distribute_datasets_from_function(
            lambda ctx, fn=fn, start=start: fn(ctx, start))
            for fn, start in zip((self.input_fn_a, self.input_fn_b), starts))

    def phase(self, step):
        return "bilevel" if step >= self.cfg.warmup_steps else "warmup"

    def step_parts(self, phase):
        # The weight step is one compiled function shared by both phases.
        weights = ("weights", (0,))
        return (weights, ("arch", (1,))) if phase == "bilevel" else (weights,)

    def _cost_terms(self):
        """``(penalty, metrics)`` of the expected cost (architecture step only)."""
        expected = self.cost_model.expected_madds(self.model.alpha, self.model.beta)
        metrics = {"expected_madds": expected}
        if self.cfg.cost_target is None:
            return 0.0, metrics
        penalty = cost.cost_penalty(expected, self.cfg.cost_target, self.cfg.cost_penalty)
        metrics["cost_penalty"] = penalty
        return self.cfg.cost_weight * penalty, metrics

    def _update(self, batch, variables, optimizer, weight_decay, with_cost=False):
        images, labels = batch
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        metrics = {}
        with tf.GradientTape() as tape:
            loss = masked_cross_entropy(labels, self.model(images, training=True),
                                        self.ignore_label)
            total = loss
            if with_cost and self.cost_model is not None:
                penalty, metrics = self._cost_terms()
                total = loss + penalty
            scaled = total / replicas
        grads = tape.gradient(scaled, variables)
        if weight_decay:
            # Coupled L2 (PyTorch's weight_decay); Keras sums gradients over replicas,
            # hence the division.
            decay = weight_decay / replicas
            grads = [g if g is None else g + decay * tf.cast(v, g.dtype)
                     for g, v in zip(grads, variables)]
        optimizer.apply_gradients(zip(grads, variables))
        return loss, metrics

    def train_step(self, step, batch, phase=None):
        if phase == "weights":
            loss, _ = self._update(batch, self.model.weight_variables,
                                   self.weight_optimizer, self.cfg.weight_decay)
            return {"loss": loss}
        if phase == "arch":
            loss, metrics = self._update(batch, self.model.arch_variables,
                                         self.arch_optimizer, self.cfg.arch_weight_decay,
                                         with_cost=True)
            return {"arch_loss": loss, **metrics}
        raise ValueError(f"unknown search step part {phase!r}")

    def learning_rates(self, step):
        return {"lr": float(self.weight_lr(step))}


#: Every decode's record (step, path, Multiply-Adds), a JSON list in the search folder.
DECODES_FILE = "decodes.json"


def record_decode_cost(model, model_dir, step, genotype, cost_model, writer=None,
                       log=None):
    """The decoded network's real Multiply-Adds (the counter on the derived model) and
    the expected cost under α/β: a line to ``log`` (default: absl ``logging.info``),
    TensorBoard and :data:`DECODES_FILE` (one record per step; a rerun replaces its
    step's record)."""
    record = {"step": int(step), "path": list(genotype.path),
              "derived_madds": cost_model.count(genotype),
              "expected_madds": float(cost_model.expected_madds(model.alpha, model.beta)),
              "input_size": list(cost_model.input_size),
              "filter_multiplier": cost_model.filter_multiplier,
              "aspp_filters": cost_model.aspp_filters,
              "decoder_filters": cost_model.decoder_filters,
              "num_classes": cost_model.num_classes}
    path = os.path.join(model_dir, DECODES_FILE)
    records = fileio.read_json(path) if fileio.exists(path) else []
    records = [r for r in records if r.get("step") != record["step"]] + [record]
    fileio.atomic_write_json(path, sorted(records, key=lambda r: r["step"]), indent=1)
    (log or logging.info)(
        f"decode at step {step}: path {record['path']}, derived network "
        f"{format_count(record['derived_madds'])} Multiply-Adds at "
        f"{record['input_size'][0]}x{record['input_size'][1]}, F = "
        f"{record['filter_multiplier']} (expected under alpha/beta "
        f"{format_count(record['expected_madds'])})")
    if writer is not None:
        with writer.as_default(step=step):
            tf.summary.scalar("arch/derived_madds", record["derived_madds"])
            tf.summary.scalar("arch/expected_madds", record["expected_madds"])
    return record


def write_decoded(model, model_dir, step, writer=None):
    """Decodes α/β; writes genotype.json (+ a per-step copy), cell and path PNGs."""
    genotype = decode.decode_supernet(model, name=f"autodeeplab_search_step{step}")
    genotype.save(os.path.join(model_dir, "genotype.json"))
    genotype.save(os.path.join(model_dir, "genotypes", f"step_{step:07d}.json"))
    alpha = keras.ops.convert_to_numpy(model.alpha)
    betas = keras.ops.convert_to_numpy(model.beta)
    plots.plot_cell(genotype.cell, os.path.join(model_dir, "cell.png"),
                    title=f"searched cell, step {step}")
    plots.plot_network_path(genotype.path, betas=betas,
                            out_path=os.path.join(model_dir, "path.png"),
                            title=f"searched path, step {step}")
    if writer is not None:
        with writer.as_default(step=step):
            tf.summary.scalar("arch/alpha_entropy", decode.alpha_entropy(alpha))
            tf.summary.scalar("arch/beta_entropy", decode.beta_entropy(betas))
            tf.summary.text("arch/path", str(list(genotype.downsample_rates)))
    return genotype


def run_search(model_dir, search=None, supernet=None, data=None, progress=True,
               argv=None, log=None):
    """Runs the Auto-DeepLab search; resumes from ``model_dir``.

    Args:
      model_dir: the search's folder (created).
      search, supernet, data: :class:`SearchConfig`, :class:`SupernetConfig` and
        :class:`~nasseg_tf.data.inputs.DataConfig` (defaults: their defaults).
      progress: show a progress bar.
      argv: the command line to record (default ``sys.argv``).
      log: callable taking a line, for each decode's cost (default: absl logging).

    Returns:
      dict with ``genotype`` (the final decoded NetworkGenotype), ``metrics``, ``model``,
      ``loop``, ``arch_history`` (α, β at every decode) and ``derived_madds`` (the
      final decoded network's Multiply-Adds; None when the trellis is too short for
      the derived network).
    """
    cfg, supernet, data = search or SearchConfig(), supernet or SupernetConfig(), (
        data or DataConfig())
    if not 0 <= cfg.warmup_steps <= cfg.steps:
        raise ValueError(f"Search.warmup_steps={cfg.warmup_steps} must be in "
                         f"[0, steps={cfg.steps}]")
    cost.check_settings(cfg.cost_target, cfg.cost_weight, cfg.cost_penalty, "Search")
    try:
        cfg.cost_model(supernet, 1)
    except ValueError as error:
        raise ValueError(f"Search.cost_*: {error}") from None
    fileio.makedirs(model_dir)
    strategy = make_run_strategy(cfg, model_dir)  # first: before the runtime starts
    keras.utils.set_random_seed(cfg.seed)
    info, train_pattern, _ = data.resolve(model_dir)
    cost_model = cfg.cost_model(supernet, info.num_classes)
    runfiles.write_run_files(model_dir, [cfg, supernet, data.resolved(model_dir)], argv)

    def supernet_fn():
        with synchronized_batch_norm(cfg.sync_batch_norm):
            return supernet.build(info.num_classes)

    task = AutoDeepLabSearchTask(
        supernet_fn,
        train_input_fn(info, train_pattern, cfg, subset=(2, 0)),
        train_input_fn(info, train_pattern, cfg, subset=(2, 1), seed_offset=1),
        cfg, info.ignore_label,
        architecture=supernet.architecture(info.num_classes), cost_model=cost_model)
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "arch"))
    arch_history = []
    cost_records = {}  # step -> record: the last decode runs twice (in and after the loop)

    def cost_record(step, genotype):
        if step not in cost_records:
            cost_records[step] = record_decode_cost(task.model, model_dir, step, genotype,
                                                    cost_model, writer, log)
        return cost_records[step]

    def decode_fn(step):
        genotype = write_decoded(task.model, model_dir, step, writer)
        arch_history.append({"step": step,
                             "alpha": keras.ops.convert_to_numpy(task.model.alpha).copy(),
                             "beta": keras.ops.convert_to_numpy(task.model.beta).copy()})
        scores = {"path_level_mean": float(np.mean(genotype.path))}
        if cost_model is not None:
            record = cost_record(step, genotype)
            arch_history[-1]["derived_madds"] = record["derived_madds"]
            scores.update(derived_madds=float(record["derived_madds"]),
                          expected_madds=record["expected_madds"])
        return scores

    loop = TrainLoop(task, strategy, model_dir, cfg.steps,
                     checkpoint_every=cfg.checkpoint_every, summary_every=cfg.summary_every,
                     eval_fn=decode_fn, eval_every=cfg.decode_every,
                     max_to_keep=cfg.max_to_keep, progress=progress)
    metrics = loop.run()
    genotype = write_decoded(task.model, model_dir, cfg.steps, writer)
    record = None if cost_model is None else cost_record(cfg.steps, genotype)
    writer.flush()
    return {"genotype": genotype, "metrics": metrics, "model": task.model, "loop": loop,
            "arch_history": arch_history,
            "derived_madds": None if record is None else record["derived_madds"]}
