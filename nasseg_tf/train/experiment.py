"""Gin-configured experiments: train, evaluate and predict with zoo models.

A gin file sets four groups (see ``gin/``)::

    Model.name = 'autodeeplab_s'           # any zoo name; Model.overrides = {...}
    Data.dataset = 'cityscapes'            # registry name (classes, ignore label)
    Data.train_pattern = '/data/cs/train-*.tfrecord'
    Training.steps = 1500000               # + batch, crop, LR schedule, strategy ...
    Evaluation.scales = (1.0,)             # + flip, max_images ...

``Data.dataset = 'demo'`` with no patterns generates the procedural demo dataset on
first use. Every run writes into its model_dir: ``command_line.txt``, ``config.gin``
(the full configuration, enough to rebuild the model) and ``operative_config.gin``
(what was actually used), checkpoints, TensorBoard summaries, ``eval_results.json``
and prediction pictures. All files are written atomically.
"""

import dataclasses
import json
import os
import shlex
import sys

import gin
import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from nasseg_tf.data import build_dataset, ensure_demo_dataset, get_dataset_info
from nasseg_tf.fileio import atomic_write_text, temp_path
from nasseg_tf.layers.common import synchronized_batch_norm
from nasseg_tf.models import zoo
from nasseg_tf.train import strategies
from nasseg_tf.train.checkpointing import variables_by_path
from nasseg_tf.train.loop import TrainLoop
from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate


# --------------------------------------------------------------------------------------
# Configuration groups.


@gin.configurable("Model")
def build_model(num_classes, name=gin.REQUIRED, overrides=None, genotype=None,
                dpc_cell=None):
    """The zoo model ``name`` with ``overrides`` (e.g. ``{'aspp_rates': (6, 12, 18)}``).

    ``genotype`` (a genotype name or a JSON path, e.g. a search's ``genotype.json``)
    is a shortcut for ``overrides['genotype']`` that keeps the other overrides of the
    gin file, so retraining a searched result is one binding:
    ``--gin_bindings="Model.genotype = 'runs/search/genotype.json'"``. With it, a
    ``path`` override is dropped: the genotype's own path is used. ``dpc_cell`` does
    the same for DPC models (a published cell name or a DPC search's cell JSON):
    ``--gin_bindings="Model.dpc_cell = 'runs/dpc/best_cell.json'"``.
    """
    overrides = dict(overrides or {})
    if genotype is not None:
        overrides["genotype"] = genotype
        overrides.pop("path", None)
    if dpc_cell is not None:
        overrides["dpc_cell"] = dpc_cell
    return zoo.build(name, num_classes=num_classes, **overrides)


@gin.configurable("Data")
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data is. ``dataset`` names the registry entry (classes, palette).

    For ``demo`` without patterns the demo dataset is generated into ``data_dir``
    (default: ``<model_dir>/../demo_data``) with the ``demo_*`` settings.
    """

    dataset: str = "demo"
    train_pattern: str = None
    eval_pattern: str = None
    data_dir: str = None
    demo_num_train: int = 200
    demo_num_val: int = 50
    demo_size: tuple = (128, 128)
    demo_seed: int = 0

    def resolve(self, model_dir):
        """``(DatasetInfo, train_pattern, eval_pattern)``; generates demo data if needed."""
        info = get_dataset_info(self.dataset)
        train, evaluation = self.train_pattern, self.eval_pattern
        if self.dataset == "demo" and not (train and evaluation):
            data_dir = self.data_dir or os.path.join(
                os.path.dirname(os.path.abspath(model_dir)), "demo_data")
            patterns = ensure_demo_dataset(
                data_dir, num_train=self.demo_num_train, num_val=self.demo_num_val,
                height=self.demo_size[0], width=self.demo_size[1], seed=self.demo_seed)
            train, evaluation = train or patterns["train"], evaluation or patterns["val"]
        if not train:
            raise ValueError(f"Data.train_pattern is not set for dataset {self.dataset!r}")
        return info, train, evaluation


@gin.configurable("Training")
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults follow DeepLab (poly LR, momentum 0.9, wd 4e-5).

    ``batch_size`` is the global batch (split over replicas). ``sync_batch_norm``
    makes every batch norm use the statistics of the global batch under a multi-replica
    strategy (:func:`~nasseg_tf.layers.common.synchronized_batch_norm`).
    """

    steps: int = 1000
    batch_size: int = 8
    crop_size: tuple = (513, 513)
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.25
    base_scale: float = 1.0
    shuffle_buffer: int = 256
    learning_rate: float = 0.007
    schedule: str = "poly"
    power: float = 0.9
    end_learning_rate: float = 0.0
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 4e-5
    strategy: str = "default"
    num_cpu_devices: int = 2
    num_gpus: int = None  # mirrored: GPU replicas required (None: all visible GPUs)
    sync_batch_norm: bool = False  # cross-replica BN statistics (TensorFlow backend)
    mixed_precision: str = None  # None, 'mixed_float16' or 'mixed_bfloat16'
    checkpoint_every: int = 500
    summary_every: int = 50
    eval_every: int = 0
    max_to_keep: int = 3
    max_weight_growth: float = 100.0  # divergence guard (see TrainLoop); 0 = off
    seed: int = 0
    deterministic: bool = False


@gin.configurable("Evaluation")
@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: multi-scale + flip inference, how many images, pictures."""

    scales: tuple = (1.0,)
    flip: bool = False
    max_images: int = None
    num_pictures: int = 4


# --------------------------------------------------------------------------------------
# Files in the model dir.


_atomic_write = atomic_write_text


def parse_gin(gin_files=(), gin_bindings=(), finalize=True):
    """Parses gin files and bindings; errors name the bad file or binding.

    Every configurable of the package is registered first (the search modules register
    theirs on import, and gin refuses new ones once a config is finalised). Each file
    and each binding is parsed on its own, so that any parse failure (gin raises
    ``ValueError``, ``KeyError``, ``SyntaxError``, ``tokenize.TokenError``, ...) becomes
    one ``ValueError`` naming the file or binding it came from.
    """
    # pylint: disable=import-outside-toplevel,unused-import
    from nasseg_tf.search import autodeeplab_search  # noqa: F401  (Supernet, Search)
    from nasseg_tf.search import dpc_proxy, dpc_tuner  # noqa: F401  (Proxy, DPCSearch, ...)

    gin.clear_config()
    for path in gin_files:
        if not os.path.exists(path):
            raise FileNotFoundError(f"gin file not found: {path}")
        # Let `include` lines resolve relative to the file and to its parents.
        folder = os.path.dirname(os.path.abspath(path))
        for _ in range(3):
            gin.add_config_file_search_path(folder)
            folder = os.path.dirname(folder)
    sources = [(gin.parse_config_file, path, f"gin file {path}") for path in gin_files]
    sources += [(gin.parse_config, binding, f"gin binding {binding!r}")
                for binding in gin_bindings]
    for parse, source, where in sources:
        try:
            parse(source)
        except Exception as e:  # pylint: disable=broad-except  (any parse failure)
            gin.clear_config()
            raise ValueError(f"bad gin configuration in {where}: "
                             f"{type(e).__name__}: {e}") from None
    if finalize:
        gin.finalize()


def write_run_files(model_dir, argv=None):
    """Saves the command line and the full gin configuration into ``model_dir``."""
    argv = sys.argv if argv is None else argv
    _atomic_write(os.path.join(model_dir, "command_line.txt"), shlex.join(argv) + "\n")
    _atomic_write(os.path.join(model_dir, "config.gin"), gin.config_str())


def write_operative_config(model_dir):
    _atomic_write(os.path.join(model_dir, "operative_config.gin"),
                  gin.operative_config_str())


def write_json(path, obj):
    _atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def make_run_strategy(cfg, model_dir=None):
    """The strategy of ``cfg`` (``strategy``, ``num_cpu_devices``, ``num_gpus``).

    Built before anything else touches TensorFlow's runtime (see
    :mod:`~nasseg_tf.train.strategies`); the replica count and devices it trains
    with are written to ``model_dir/run_info.json`` and printed.
    """
    strategy = strategies.make_strategy(cfg.strategy, num_cpu_devices=cfg.num_cpu_devices,
                                        num_gpus=getattr(cfg, "num_gpus", None))
    described = strategies.describe(strategy)
    if model_dir is not None and _is_chief(strategy):
        write_json(os.path.join(model_dir, "run_info.json"),
                   dict(described, tensorflow=tf.__version__, keras=keras.__version__))
    devices = ", ".join(d.rsplit("/", 1)[-1] for d in described["devices"])
    print(f"replicas: {described['replicas']} ({described['strategy']}"
          f"{' on ' + devices if devices else ''})")
    return strategy


# --------------------------------------------------------------------------------------
# Train.


def train_input_fn(info, pattern, cfg, subset=None, seed_offset=0):
    """``(input_context, start_batch) -> dataset`` of per-replica training batches.

    ``cfg`` is any config with the training-input fields (``batch_size`` global,
    ``crop_size``, ``min_scale``, ``max_scale``, ``base_scale``, ``shuffle_buffer``,
    ``seed``; ``scale_step`` optional): :class:`TrainConfig` or the search's config.
    ``subset`` selects a fixed record subset (the search's trainA / trainB halves).
    """
    def input_fn(ctx, start_batch):
        return build_dataset(
            pattern, num_classes=info.num_classes, ignore_label=info.ignore_label,
            training=True, batch_size=ctx.get_per_replica_batch_size(cfg.batch_size),
            crop_size=tuple(cfg.crop_size), min_scale=cfg.min_scale,
            max_scale=cfg.max_scale, scale_step=getattr(cfg, "scale_step", None),
            base_scale=cfg.base_scale, shuffle_buffer=cfg.shuffle_buffer,
            seed=cfg.seed + seed_offset, input_context=ctx, start_batch=start_batch,
            subset=subset)
    return input_fn


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def train(model_dir, progress=True, argv=None):
    """Trains the gin-configured model; resumes from the latest checkpoint in ``model_dir``.

    Returns:
      dict with ``metrics`` (last step), ``model``, ``loop`` (its ``history``), ``eval``
      (the full results of the final evaluation, or None), ``dataset_info`` and
      ``eval_pattern``.
    """
    cfg, data, eval_cfg = TrainConfig(), DataConfig(), EvalConfig()
    os.makedirs(model_dir, exist_ok=True)
    strategy = make_run_strategy(cfg, model_dir)  # first: before the runtime starts
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy(cfg.mixed_precision)
    try:
        return _train(model_dir, strategy, cfg, data, eval_cfg, progress, argv)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(model_dir, strategy, cfg, data, eval_cfg, progress, argv):
    chief = _is_chief(strategy)
    info, train_pattern, eval_pattern = data.resolve(model_dir)
    if chief:
        write_run_files(model_dir, argv)

    learning_rate = make_learning_rate(cfg.schedule, cfg.learning_rate, cfg.steps,
                                       cfg.end_learning_rate, cfg.power, cfg.warmup_steps)
    def model_fn():
        with synchronized_batch_norm(cfg.sync_batch_norm):
            return build_model(info.num_classes)

    task = SegmentationTask(
        model_fn=model_fn,
        input_fn=train_input_fn(info, train_pattern, cfg),
        learning_rate=learning_rate, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, ignore_label=info.ignore_label,
        loss_scale=cfg.mixed_precision == "mixed_float16", total_steps=cfg.steps)

    last_eval = {}

    def eval_fn(step):
        results = run_evaluation(task.model, info, eval_pattern, eval_cfg, model_dir,
                                 step=step, progress=False)
        last_eval.clear()
        last_eval.update(results)
        return {"miou": results["miou"], "pixel_accuracy": results["pixel_accuracy"]}

    loop = TrainLoop(task, strategy, model_dir, cfg.steps,
                     checkpoint_every=cfg.checkpoint_every,
                     summary_every=cfg.summary_every,
                     eval_fn=eval_fn if (eval_pattern and chief) else None,
                     eval_every=cfg.eval_every, max_to_keep=cfg.max_to_keep,
                     progress=progress, is_chief=chief,
                     max_weight_growth=cfg.max_weight_growth)
    metrics = loop.run()
    if chief:
        write_operative_config(model_dir)
        save_keras_model(task.model, os.path.join(model_dir, "model.keras"))
    return {"metrics": metrics, "model": task.model, "loop": loop,
            "eval": dict(last_eval) or None, "dataset_info": info,
            "eval_pattern": eval_pattern}


def save_keras_model(model, path):
    """Saves a ``.keras`` file atomically."""
    tmp = temp_path(path, ".keras")
    model.save(tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Evaluate / restore.


def restore_model(model_dir, checkpoint=None):
    """Rebuilds the model from ``model_dir/config.gin`` and restores its weights.

    Args:
      model_dir: a training run's folder.
      checkpoint: a checkpoint path; default the latest in ``model_dir/checkpoints``.
    Returns:
      ``(model, DatasetInfo, step)``.
    """
    config = os.path.join(model_dir, "config.gin")
    if not os.path.exists(config):
        raise FileNotFoundError(f"{config} not found: is {model_dir} a training run?")
    checkpoint = checkpoint or tf.train.latest_checkpoint(
        os.path.join(model_dir, "checkpoints"))
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}/checkpoints")
    info = get_dataset_info(DataConfig().dataset)
    model = build_model(info.num_classes)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(model=variables_by_path(model.variables), step=step)
    ckpt.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    return model, info, int(step.numpy())


def run_evaluation(model, info, eval_pattern, eval_cfg, model_dir, step=None,
                   progress=True):
    """Evaluates ``model`` on ``eval_pattern``; writes JSON results and pictures."""
    from nasseg_tf.train import evaluation  # pylint: disable=import-outside-toplevel

    if not eval_pattern:
        raise ValueError("Data.eval_pattern is not set")
    dataset = build_dataset(eval_pattern, num_classes=info.num_classes,
                            ignore_label=info.ignore_label, training=False)
    results = evaluation.evaluate(
        model, dataset, info.num_classes, ignore_label=info.ignore_label,
        class_names=info.class_names, scales=tuple(eval_cfg.scales), flip=eval_cfg.flip,
        max_images=eval_cfg.max_images, progress=progress)
    results["step"] = step
    write_json(os.path.join(model_dir, "eval_results.json"), results)
    pictures = os.path.join(model_dir, "pictures")
    drawn = []
    for i, (image, label) in enumerate(dataset.take(eval_cfg.num_pictures)):
        probs = evaluation.predict_logits(model, image, tuple(eval_cfg.scales),
                                          eval_cfg.flip)
        pred = np.argmax(np.asarray(probs)[0], -1)
        path = evaluation.save_prediction_pictures(
            np.asarray(image[0]).astype(np.uint8), np.asarray(label[0]), pred, info,
            os.path.join(pictures, f"val_{i:03d}.png"))
        drawn.append(np.asarray(Image.open(path).convert("RGB")))
    if drawn and step is not None:
        # TensorBoard: image | ground truth | prediction, under the eval run.
        writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
        with writer.as_default(step=int(step)):
            for i, picture in enumerate(drawn):
                tf.summary.image(f"predictions/val_{i:03d}", picture[None])
            tf.summary.scalar("miou", results["miou"] or 0.0)
        writer.flush()
    return results


def evaluate_model_dir(model_dir, checkpoint=None, progress=True):
    """Evaluates a run's checkpoint with the gin-configured data and settings."""
    model, info, step = restore_model(model_dir, checkpoint)
    _, _, eval_pattern = DataConfig().resolve(model_dir)
    return run_evaluation(model, info, eval_pattern, EvalConfig(), model_dir, step=step,
                          progress=progress)
