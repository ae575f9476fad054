"""Experiments: train, evaluate and restore zoo models from configuration value objects.

A run is described by four groups (gin names in parentheses; the command line binds
them from ``gin/`` files, see :mod:`nasseg_tf.cli.configs`)::

    Model.name = 'autodeeplab_s'           # ModelConfig: any zoo name; Model.overrides
    Data.dataset = 'cityscapes'            # DataConfig: registry name, patterns
    Data.train_pattern = '/data/cs/train-*.tfrecord'
    Training.steps = 1500000               # TrainConfig: batch, crop, LR, strategy ...
    Evaluation.scales = (1.0,)             # EvalConfig: flip, max_images ...

``Data.dataset = 'demo'`` with no patterns generates the procedural demo dataset on
first use. Every run writes into its model_dir: ``command_line.txt``, ``config.gin``
(the full resolved configuration, enough to rebuild the model from the folder alone),
the searched genotype / DPC cell it uses, ``run_info.json``, checkpoints (each with the
architecture's fingerprint), TensorBoard summaries, ``eval_results.json`` and
prediction pictures. All files are written atomically.
"""

import dataclasses
import functools
import io
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from nasseg_tf import fileio, runfiles
from nasseg_tf.data import build_dataset, get_dataset_info
from nasseg_tf.data.inputs import DataConfig, train_input_fn
from nasseg_tf.fileio import atomic_path
from nasseg_tf.layers.common import synchronized_batch_norm
from nasseg_tf.train import strategies
from nasseg_tf.train.checkpointing import (check_architecture, has_architecture,
                                           variables_by_path)
from nasseg_tf.train.loop import TrainLoop
from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate
from nasseg_tf.train.warm_start import warm_start


# --------------------------------------------------------------------------------------
# Configuration groups.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training recipe (gin ``Training``). Defaults follow DeepLab (poly LR,
    momentum 0.9, wd 4e-5).

    ``batch_size`` is the global batch (split over replicas). ``sync_batch_norm``
    makes every batch norm use the statistics of the global batch under a multi-replica
    strategy (:func:`~nasseg_tf.layers.common.synchronized_batch_norm`).
    ``init_checkpoint`` warm-starts the model (our run or checkpoint, a ``.keras`` file,
    or an official TF1 DeepLab checkpoint; :mod:`~nasseg_tf.train.warm_start`) except
    the weights matching ``init_exclude``; it applies only while the run has no
    checkpoint of its own (a resumed run continues from its checkpoint).
    """

    GIN_NAME = "Training"

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
    init_checkpoint: str = None  # warm start (nasseg_tf.train.warm_start); resume wins
    init_exclude: tuple = ()  # regexes of variable paths not warm-started, e.g. logits
    seed: int = 0
    deterministic: bool = False


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings (gin ``Evaluation``): multi-scale + flip inference, how many
    images, pictures."""

    GIN_NAME = "Evaluation"

    scales: tuple = (1.0,)
    flip: bool = False
    max_images: int = None
    num_pictures: int = 4


# --------------------------------------------------------------------------------------
# The run's strategy.


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
        runfiles.write_json(os.path.join(model_dir, runfiles.RUN_INFO),
                   dict(described, tensorflow=tf.__version__, keras=keras.__version__))
    devices = ", ".join(d.rsplit("/", 1)[-1] for d in described["devices"])
    print(f"replicas: {described['replicas']} ({described['strategy']}"
          f"{' on ' + devices if devices else ''})")
    return strategy


# --------------------------------------------------------------------------------------
# Train.


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def train(model_dir, model, data=None, training=None, evaluation=None, progress=True,
          argv=None):
    """Trains ``model`` (a :class:`ModelConfig`); resumes from ``model_dir``'s checkpoint.

    Args:
      model_dir: the run folder (created).
      model, data, training, evaluation: the run's configuration value objects
        (defaults: ``DataConfig()``, ``TrainConfig()``, ``EvalConfig()``).
      progress: show a progress bar.
      argv: the command line to record (default ``sys.argv``).

    Returns:
      dict with ``metrics`` (last step), ``model``, ``loop`` (its ``history``), ``eval``
      (the full results of the final evaluation, or None), ``dataset_info`` and
      ``eval_pattern``.
    """
    cfg = training or TrainConfig()
    fileio.makedirs(model_dir)
    strategy = make_run_strategy(cfg, model_dir)  # first: before the runtime starts
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy(cfg.mixed_precision)
    try:
        return _train(model_dir, strategy, model, data or DataConfig(), cfg,
                      evaluation or EvalConfig(), progress, argv)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(model_dir, strategy, model_cfg, data, cfg, eval_cfg, progress, argv):
    chief = _is_chief(strategy)
    info, train_pattern, eval_pattern = data.resolve(model_dir)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if latest and not has_architecture(latest):  # resuming a run from before numerics
        model_cfg = model_cfg.with_legacy_numerics()
    saved_model_cfg, model_cfg = model_cfg.resolve(model_dir, write=chief)
    if cfg.init_checkpoint:
        cfg = dataclasses.replace(cfg, init_checkpoint=fileio.abspath(cfg.init_checkpoint),
                                  init_exclude=tuple(cfg.init_exclude))
    if chief:
        runfiles.write_run_files(
            model_dir, [saved_model_cfg, data.resolved(model_dir), cfg, eval_cfg], argv)
    init_fn = None
    if cfg.init_checkpoint and not latest:  # resume wins over a warm start
        init_fn = functools.partial(_warm_start, cfg.init_checkpoint, cfg.init_exclude)

    learning_rate = make_learning_rate(cfg.schedule, cfg.learning_rate, cfg.steps,
                                       cfg.end_learning_rate, cfg.power, cfg.warmup_steps)

    def model_fn():
        with synchronized_batch_norm(cfg.sync_batch_norm):
            return model_cfg.build(info.num_classes)

    task = SegmentationTask(
        model_fn=model_fn,
        input_fn=train_input_fn(info, train_pattern, cfg),
        learning_rate=learning_rate, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, ignore_label=info.ignore_label,
        loss_scale=cfg.mixed_precision == "mixed_float16", total_steps=cfg.steps,
        architecture=model_cfg.architecture(), init_fn=init_fn)

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
        save_keras_model(task.model, os.path.join(model_dir, "model.keras"))
    return {"metrics": metrics, "model": task.model, "loop": loop,
            "eval": dict(last_eval) or None, "dataset_info": info,
            "eval_pattern": eval_pattern}


def _warm_start(path, exclude, model):
    report = warm_start(model, path, exclude)
    print(f"warm start: {len(report['loaded'])} weights from {report['source']} "
          f"({report['kind']}); {len(report['excluded'])} excluded, "
          f"{len(report['not_in_source'])} not in it (left at their initial values)")


def save_keras_model(model, path):
    """Saves a ``.keras`` file atomically (:func:`nasseg_tf.fileio.atomic_path`)."""
    with atomic_path(path, ".keras") as tmp:  # Keras wants the extension
        model.save(tmp)


# --------------------------------------------------------------------------------------
# Evaluate / restore.


def restore_model(model_dir, model, data, checkpoint=None):
    """Rebuilds a run's model from its configuration and restores its weights.

    Args:
      model_dir: a training run's folder (relative paths in its config, e.g.
        ``genotype.json``, are looked up here: the folder may have been moved).
      model, data: the run's :class:`ModelConfig` and :class:`DataConfig` (read from
        its ``config.gin`` by the command line).
      checkpoint: a checkpoint path; default the latest in ``model_dir/checkpoints``.

    Returns:
      ``(model, DatasetInfo, step)``.

    A checkpoint without an architecture record (written before the zoo's
    ``numerics`` option existed) is restored with ``numerics='legacy'``, the function
    it was trained with.

    Raises:
      ArchitectureMismatchError: the checkpoint records another architecture (e.g. a
        genotype edited since), naming the difference.
    """
    checkpoint = checkpoint or tf.train.latest_checkpoint(
        os.path.join(model_dir, "checkpoints"))
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {model_dir}/checkpoints: is it a "
                                "training run?")
    if not has_architecture(checkpoint):  # written before numerics were an option
        model = model.with_legacy_numerics()
    check_architecture(checkpoint, model.architecture(base_dir=model_dir))
    info = get_dataset_info(data.in_run(model_dir).dataset)
    keras_model = model.build(info.num_classes, base_dir=model_dir)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(model=variables_by_path(keras_model.variables), step=step)
    ckpt.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    return keras_model, info, int(step.numpy())


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
    runfiles.write_json(os.path.join(model_dir, "eval_results.json"), results)
    pictures = os.path.join(model_dir, "pictures")
    drawn = []
    for i, (image, label) in enumerate(dataset.take(eval_cfg.num_pictures)):
        probs = evaluation.predict_logits(model, image, tuple(eval_cfg.scales),
                                          eval_cfg.flip)
        pred = np.argmax(np.asarray(probs)[0], -1)
        path = evaluation.save_prediction_pictures(
            np.asarray(image[0]).astype(np.uint8), np.asarray(label[0]), pred, info,
            os.path.join(pictures, f"val_{i:03d}.png"))
        with Image.open(io.BytesIO(fileio.read_bytes(path))) as picture:
            drawn.append(np.asarray(picture.convert("RGB")))
    if drawn and step is not None:
        # TensorBoard: image | ground truth | prediction, under the eval run.
        writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
        with writer.as_default(step=int(step)):
            for i, picture in enumerate(drawn):
                tf.summary.image(f"predictions/val_{i:03d}", picture[None])
            tf.summary.scalar("miou", results["miou"] or 0.0)
        writer.flush()
    return results


def evaluate_model_dir(model_dir, model, data, evaluation=None, checkpoint=None,
                       progress=True):
    """Evaluates a run's checkpoint (:func:`restore_model`) with ``evaluation``."""
    keras_model, info, step = restore_model(model_dir, model, data, checkpoint)
    _, _, eval_pattern = data.in_run(model_dir).resolve(model_dir)
    return run_evaluation(keras_model, info, eval_pattern, evaluation or EvalConfig(),
                          model_dir, step=step, progress=progress)
