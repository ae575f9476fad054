"""``tf.data`` input pipelines for DeepLab-format TFRecords.

:func:`build_dataset` yields ``(image, label)`` batches: ``image`` is ``float32
[B, h, w, 3]`` in raw pixel units (0..255) — the models normalise internally — and
``label`` is ``int32 [B, h, w]`` with ``ignore_label`` where there is no ground truth.

Training follows the DeepLab recipe: shuffle, random scale in
``[min_scale, max_scale]`` (on a grid of ``scale_step`` when given), pad to the crop
size (image with the mean value 127.5, label with the ignore label), random crop,
random left-right flip. Every random choice is a stateless op seeded with
``(seed, element index)``, so a given ``seed`` reproduces the stream exactly, even
with parallel ``map``. Evaluation is deterministic and keeps full images.

Bad data fails before the first step, naming the file: by default
(``check_files="records"``) :func:`build_dataset` reads every record of every file it
will use before returning — framing, CRC, image and label decoding, sizes, label
values — and raises :class:`~nasseg_tf.data.tfrecord.RecordError` naming the file,
the record index and the record's filename. So a bad label in the last record, or a
corrupted payload inside an intact file (which TensorFlow would report as a
``DataLossError`` naming no file, mid-training), stops the run before anything is
trained or written. Each shard's success is cached (see
:func:`nasseg_tf.data.tfrecord.check_records`: keyed by path, size, modification
time, ``num_classes`` and ``ignore_label``), so reruns over unchanged data skip the
scan; a changed shard is scanned again. ``check_files="framing"`` only checks that no
file is truncated (cheap, no cache). The per-record asserts in the graph (sizes,
label values; the message names the record's filename) stay in every mode.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from nasseg_tf.data import tfrecord

MEAN_PIXEL = 127.5

Size = Tuple[int, int]


def scale_choices(min_scale: float, max_scale: float,
                  scale_step: Optional[float]) -> Optional[np.ndarray]:
    """The discrete scales ``min, min + step, ..., max``, or None for continuous.

    Raises:
        ValueError: If the range or step is invalid.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"Need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}.")
    if not scale_step or min_scale == max_scale:
        return None
    if scale_step < 0:
        raise ValueError(f"scale_step must be positive, got {scale_step}.")
    count = int(round((max_scale - min_scale) / scale_step)) + 1
    return np.linspace(min_scale, min_scale + (count - 1) * scale_step, count,
                       dtype=np.float32)


def _random_scale(seed: tf.Tensor, min_scale: float, max_scale: float,
                  choices: Optional[np.ndarray]) -> tf.Tensor:
    if choices is not None:
        index = tf.random.stateless_uniform((), seed, minval=0, maxval=len(choices),
                                            dtype=tf.int32)
        return tf.gather(tf.constant(choices), index)
    return tf.random.stateless_uniform((), seed, minval=min_scale, maxval=max_scale)


def resize_pair(image: tf.Tensor, label: tf.Tensor,
                scale: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Rescales ``image`` (bilinear, float) and ``label`` (nearest) by ``scale``."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), 1)
    image = tf.image.resize(image, new_hw, method="bilinear")
    label = tf.image.resize(label, new_hw, method="nearest")
    return image, label


def pad_pair(image: tf.Tensor, label: tf.Tensor, target_hw: Union[Size, tf.Tensor],
             ignore_label: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Pads bottom/right up to at least ``target_hw``: image 127.5, label ignore."""
    hw = tf.shape(image)[:2]
    extra = tf.maximum(tf.convert_to_tensor(target_hw, tf.int32) - hw, 0)
    paddings = tf.stack([[0, extra[0]], [0, extra[1]], [0, 0]])
    image = tf.pad(image, paddings, constant_values=MEAN_PIXEL)
    label = tf.pad(label, paddings, constant_values=ignore_label)
    return image, label


def random_crop_pair(image: tf.Tensor, label: tf.Tensor, crop_size: Size,
                     seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Crops the same random ``crop_size`` window from image and label."""
    hw = tf.shape(image)[:2]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    top = tf.random.stateless_uniform((), seeds[0], minval=0,
                                      maxval=hw[0] - crop_size[0] + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform((), seeds[1], minval=0,
                                       maxval=hw[1] - crop_size[1] + 1, dtype=tf.int32)
    image = image[top:top + crop_size[0], left:left + crop_size[1]]
    label = label[top:top + crop_size[0], left:left + crop_size[1]]
    return image, label


def random_flip_pair(image: tf.Tensor, label: tf.Tensor,
                     seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Flips image and label left-right together with probability 0.5."""
    flip = tf.random.stateless_uniform((), seed) < 0.5
    return tf.cond(flip,
                   lambda: (tf.reverse(image, [1]), tf.reverse(label, [1])),
                   lambda: (image, label))


def _train_transform(example: Dict[str, tf.Tensor], seed: tf.Tensor, *, crop_size: Size,
                     min_scale: float, max_scale: float, choices: Optional[np.ndarray],
                     base_scale: float, flip: bool, ignore_label: int):
    scale_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    image = tf.cast(example["image"], tf.float32)
    label = tf.cast(example["label"], tf.int32)
    scale = _random_scale(scale_seed, min_scale, max_scale, choices) * base_scale
    image, label = resize_pair(image, label, scale)
    image, label = pad_pair(image, label, crop_size, ignore_label)
    image, label = random_crop_pair(image, label, crop_size, crop_seed)
    if flip:
        image, label = random_flip_pair(image, label, flip_seed)
    image = tf.ensure_shape(image, (crop_size[0], crop_size[1], 3))
    label = tf.ensure_shape(label[..., 0], crop_size)
    return image, label


def _eval_transform(example: Dict[str, tf.Tensor], *, base_scale: float,
                    pad_size: Optional[Size], ignore_label: int):
    image = tf.cast(example["image"], tf.float32)
    label = tf.cast(example["label"], tf.int32)
    if base_scale != 1.0:
        image, label = resize_pair(image, label, tf.constant(base_scale))
    if pad_size is not None:
        hw = tf.shape(image)[:2]
        fits = tf.debugging.Assert(
            tf.reduce_all(hw <= tf.constant(pad_size)),
            ["Record", example["filename"], "of size", hw,
             f"does not fit eval_pad_size {tuple(pad_size)}"])
        with tf.control_dependencies([fits]):
            image, label = pad_pair(image, label, pad_size, ignore_label)
        image = tf.ensure_shape(image, (pad_size[0], pad_size[1], 3))
        label = tf.ensure_shape(label, (pad_size[0], pad_size[1], 1))
    return image, label[..., 0]


def _parse_and_validate(serialized, num_classes: int, ignore_label: int):
    example = tfrecord.parse_example(serialized)
    return tfrecord.validate_example(example, num_classes, ignore_label)


def _shard_for_pipeline(files: List[str], input_context
                        ) -> Tuple[List[str], Optional[Tuple[int, int]]]:
    """This input pipeline's files, and ``(count, index)`` if records must be split."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files, None
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) >= count:
        return files[index::count], None
    return files, (count, index)


def _record_dataset(files: Sequence[str], *, training: bool, seed: int,
                    shuffle_buffer: int, cycle_length: int,
                    record_shard: Optional[Tuple[int, int]] = None,
                    subset: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
    """Serialized records; for training, files and records are shuffled by ``seed``.

    With ``subset=(count, index)`` the records are enumerated in a fixed order (files
    in the given order, records in file order) and every count-th one from ``index`` is
    kept before any shuffling, so the subset is the same in every epoch and the subsets
    of different indices are disjoint.
    """
    if subset is not None:
        dataset = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(
            tf.data.TFRecordDataset).shard(*subset)
        if record_shard:
            dataset = dataset.shard(*record_shard)
        if training:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed + 1,
                                      reshuffle_each_iteration=True)
        return dataset
    if not training:
        dataset = tf.data.TFRecordDataset(list(files))
        return dataset.shard(*record_shard) if record_shard else dataset
    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset,
                                 cycle_length=max(1, min(cycle_length, len(files))),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if record_shard:
        dataset = dataset.shard(*record_shard)
    return dataset.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)


def _check_arguments(training: bool, crop_size, batch_size: Optional[int],
                     num_classes: int, ignore_label: int) -> None:
    if training and batch_size is None:
        raise ValueError("Training needs a batch_size.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    if 0 <= ignore_label < num_classes:
        raise ValueError(f"ignore_label {ignore_label} is a class index "
                         f"(num_classes={num_classes}).")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if training and (crop_size is None or len(crop_size) != 2 or min(crop_size) < 1):
        raise ValueError(f"Training needs crop_size=(height, width), got {crop_size!r}.")


CHECK_MODES = ("records", "framing", "none")


def _check_mode(check_files: Union[str, bool, None]) -> str:
    """Normalises ``check_files``: True is ``"records"``, False/None ``"none"``."""
    if check_files is True:
        return "records"
    if check_files is False or check_files is None:
        return "none"
    if isinstance(check_files, str) and check_files in CHECK_MODES:
        return check_files
    raise ValueError(f"check_files must be one of {', '.join(CHECK_MODES)} (or True / "
                     f"False), got {check_files!r}.")


def build_dataset(file_pattern: Union[str, Sequence[str]], *, num_classes: int,
                  training: bool, ignore_label: int = 255,
                  batch_size: Optional[int] = None, crop_size: Optional[Size] = None,
                  min_scale: float = 0.5, max_scale: float = 2.0,
                  scale_step: Optional[float] = 0.25, flip: bool = True,
                  base_scale: float = 1.0, eval_pad_size: Optional[Size] = None,
                  shuffle_buffer: int = 256, seed: Optional[int] = None,
                  repeat: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                  check_files: Union[str, bool] = "records", cycle_length: int = 4,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  start_batch: int = 0,
                  subset: Optional[Tuple[int, int]] = None,
                  check_cache_dir: Optional[str] = None) -> tf.data.Dataset:
    """Builds the training or evaluation pipeline over DeepLab TFRecords.

    Args:
        file_pattern: Glob pattern (or list of patterns/paths) of TFRecord shards.
        num_classes: Number of classes; other label values except ``ignore_label``
            fail the per-record assert, whose message names the record.
        training: Augment, shuffle and crop (True) or evaluate full images (False).
        ignore_label: Label of padding and unlabelled pixels.
        batch_size: Images per batch; default 1 for evaluation, required for training.
        crop_size: ``(height, width)`` of training crops (required for training).
        min_scale: Smallest random scale factor.
        max_scale: Largest random scale factor.
        scale_step: Scales are drawn from ``min, min + step, ..., max``; None or 0
            draws uniformly from the interval.
        flip: Random left-right flips during training.
        base_scale: Fixed rescale applied before everything else (train and eval),
            e.g. 0.5 for the half-resolution Cityscapes of the Auto-DeepLab search.
        eval_pad_size: Evaluation only: pad every image (bottom/right, ignore label)
            to this fixed ``(height, width)`` for static shapes; images must fit.
            Without it, batches larger than 1 are padded to their largest image.
        shuffle_buffer: Records in the shuffle buffer (training).
        seed: Seed of all randomness; None picks a fresh one (not reproducible).
        repeat: Repeat forever; defaults to ``training``.
        drop_remainder: Drop a final short batch; defaults to ``training``.
        check_files: What to check before returning, in the files this pipeline
            reads. ``"records"`` (default; also ``True``): every record's CRC, image
            and label decoding, sizes and label values, with each shard's success
            cached in ``check_cache_dir``. ``"framing"``: only that no file is
            truncated (a seek per record). ``"none"`` (also ``False``): nothing.
            Errors name the file (and record), unlike TensorFlow's
            ``DataLossError``.
        cycle_length: Files read concurrently during training.
        input_context: From ``strategy.distribute_datasets_from_function``: this
            pipeline reads only its share of the data (whole files when there are
            enough, else every n-th record) with its own seed. ``batch_size`` is then
            the per-replica batch size.
        start_batch: Training only: start the stream at this batch, exactly where an
            uninterrupted run with the same seed would be (the training loop resumes
            with it). Skipped records are read but not decoded.
        subset: ``(count, index)``: use only every count-th record (in file order),
            starting at ``index`` — a split fixed across epochs, e.g. the halves
            trainA / trainB of the Auto-DeepLab search are ``(2, 0)`` and ``(2, 1)``.
        check_cache_dir: Folder of the record-check cache (``check_files="records"``);
            default :func:`~nasseg_tf.data.tfrecord.record_check_cache_dir`
            (``$NASSEG_CACHE_DIR/record_checks`` or
            ``~/.cache/nasseg_tf/record_checks``). Failing to write it never fails
            the build; the shards are then checked again next time.

    Returns:
        A ``tf.data.Dataset`` of ``(image float32 [B, h, w, 3], label int32 [B, h, w])``.

    Raises:
        FileNotFoundError: If the pattern matches no file.
        ValueError: For inconsistent arguments.
        tfrecord.RecordError: If ``check_files`` finds a bad file or record; the
            message names the file (and the record index and filename).
    """
    _check_arguments(training, crop_size, batch_size, num_classes, ignore_label)
    check_mode = _check_mode(check_files)
    batch_size = 1 if batch_size is None else batch_size
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    seed = int(np.random.randint(0, 2**31 - 2)) if seed is None else int(seed)
    files = tfrecord.resolve_files(file_pattern)
    files, record_shard = _shard_for_pipeline(files, input_context)
    if check_mode == "records":
        tfrecord.check_records(files, num_classes, ignore_label, cache_dir=check_cache_dir)
    elif check_mode == "framing":
        tfrecord.check_tfrecord_files(files)
    if input_context is not None:
        seed += 7919 * input_context.input_pipeline_id

    dataset = _record_dataset(files, training=training, seed=seed,
                              shuffle_buffer=shuffle_buffer, cycle_length=cycle_length,
                              record_shard=record_shard, subset=subset)
    if repeat:
        dataset = dataset.repeat()
    if training:
        transform = _make_train_fn(num_classes, ignore_label, seed, crop_size, min_scale,
                                   max_scale, scale_step, base_scale, flip)
        dataset = dataset.enumerate()
        if start_batch:
            dataset = dataset.skip(int(start_batch) * batch_size)
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:
        transform = _make_eval_fn(num_classes, ignore_label, base_scale, eval_pad_size)
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        dataset = _eval_batch(dataset, batch_size, drop_remainder, ignore_label)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _make_train_fn(num_classes, ignore_label, seed, crop_size, min_scale, max_scale,
                   scale_step, base_scale, flip):
    choices = scale_choices(min_scale, max_scale, scale_step)
    crop_size = (int(crop_size[0]), int(crop_size[1]))

    def transform(index, serialized):
        example = _parse_and_validate(serialized, num_classes, ignore_label)
        element_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return _train_transform(example, element_seed, crop_size=crop_size,
                                min_scale=min_scale, max_scale=max_scale,
                                choices=choices, base_scale=base_scale, flip=flip,
                                ignore_label=ignore_label)

    return transform


def _make_eval_fn(num_classes, ignore_label, base_scale, pad_size):
    pad_size = None if pad_size is None else (int(pad_size[0]), int(pad_size[1]))

    def transform(serialized):
        example = _parse_and_validate(serialized, num_classes, ignore_label)
        return _eval_transform(example, base_scale=base_scale, pad_size=pad_size,
                               ignore_label=ignore_label)

    return transform


def _eval_batch(dataset: tf.data.Dataset, batch_size: int, drop_remainder: bool,
                ignore_label: int) -> tf.data.Dataset:
    """Batches evaluation images, padding each batch to its largest image."""
    return dataset.padded_batch(
        batch_size, padding_values=(tf.constant(MEAN_PIXEL, tf.float32),
                                    tf.constant(ignore_label, tf.int32)),
        drop_remainder=drop_remainder)
