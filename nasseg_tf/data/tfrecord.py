"""The DeepLab TFRecord format: writing, parsing and validating records.

One ``tf.train.Example`` per image, with the feature keys of the official TF1 DeepLab
converters (SPEC §4), so TFRecords made by those tools load unchanged:

==========================================  =======================================
key                                         value
==========================================  =======================================
``image/encoded``                           PNG or JPEG bytes of the RGB image
``image/filename``                          name of the source image (no extension)
``image/format``                            ``"png"`` or ``"jpeg"``
``image/height``, ``image/width``           image size in pixels
``image/channels``                          3
``image/segmentation/class/encoded``        PNG bytes of the single-channel label
``image/segmentation/class/format``         ``"png"``
==========================================  =======================================

Shards are named ``{split}-{index:05d}-of-{num_shards:05d}.tfrecord`` and each is
written to a temporary file first (a :func:`nasseg_tf.fileio.temp_path`) and renamed
into place when complete (:func:`nasseg_tf.fileio.replace`).

Errors name the offending file or record: :func:`validate_records` (pure Python, used
by the converters), :func:`check_records` (the same checks, with each shard's success
cached; run by the input pipeline before the first step) and
:func:`check_tfrecord_files` (framing check that catches a truncated file) raise
:class:`RecordError`; inside ``tf.data``, :func:`validate_example` adds
``tf.debugging.Assert`` ops whose messages carry the record's filename.

The record-check cache holds one small JSON file per checked shard in
:func:`record_check_cache_dir` (``$NASSEG_CACHE_DIR/record_checks``, else
``~/.cache/nasseg_tf/record_checks``). An entry is used only while the shard's
absolute path, size, modification time and inode, ``num_classes``, ``ignore_label``
and :data:`RECORD_CHECK_FORMAT` all match; only successful checks are stored, each
written to a temporary file and renamed into place.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import struct
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from nasseg_tf import fileio

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

TFRECORD_SUFFIX = ".tfrecord"

_FEATURE_SPEC = {
    IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string),
    IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_CHANNELS: tf.io.FixedLenFeature((), tf.int64, default_value=3),
    LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
}


class RecordError(ValueError):
    """A TFRecord file or one of its records is unusable; the message names it."""


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
def _bytes_feature(value: Union[bytes, str]) -> tf.train.Feature:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(image_bytes: bytes, label_bytes: bytes, filename: str, height: int,
                 width: int, *, channels: int = 3, image_format: str = "png",
                 label_format: str = "png") -> tf.train.Example:
    """Builds one DeepLab-format ``tf.train.Example``.

    Args:
        image_bytes: Encoded PNG or JPEG image.
        label_bytes: Encoded single-channel PNG label.
        filename: Name that identifies the record in error messages.
        height: Image height in pixels.
        width: Image width in pixels.
        channels: Image channels (3 for RGB).
        image_format: ``"png"`` or ``"jpeg"``.
        label_format: ``"png"``.

    Returns:
        The example; call ``SerializeToString()`` to write it.
    """
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_ENCODED: _bytes_feature(image_bytes),
        IMAGE_FILENAME: _bytes_feature(filename),
        IMAGE_FORMAT: _bytes_feature(image_format),
        IMAGE_HEIGHT: _int64_feature(height),
        IMAGE_WIDTH: _int64_feature(width),
        IMAGE_CHANNELS: _int64_feature(channels),
        LABEL_ENCODED: _bytes_feature(label_bytes),
        LABEL_FORMAT: _bytes_feature(label_format),
    }))


def encode_png(array: np.ndarray) -> bytes:
    """Encodes a ``uint8`` ``[H, W]`` or ``[H, W, 3]`` array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def example_from_arrays(image: np.ndarray, label: np.ndarray,
                        filename: str) -> tf.train.Example:
    """Builds an example from a ``uint8`` RGB image ``[H, W, 3]`` and label ``[H, W]``.

    Both are stored losslessly as PNG.

    Raises:
        RecordError: If the shapes do not agree.
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3 or label.shape != image.shape[:2]:
        raise RecordError(f"Record {filename!r}: image shape {image.shape} and label "
                          f"shape {label.shape} do not form an [H, W, 3] / [H, W] pair.")
    return make_example(encode_png(image), encode_png(label), filename,
                        image.shape[0], image.shape[1])


def shard_filename(split: str, index: int, num_shards: int) -> str:
    """``{split}-{index:05d}-of-{num_shards:05d}.tfrecord``."""
    return f"{split}-{index:05d}-of-{num_shards:05d}{TFRECORD_SUFFIX}"


def shard_pattern(output_dir: str, split: str) -> str:
    """Glob pattern matching every shard of ``split`` in ``output_dir``."""
    return os.path.join(output_dir, f"{split}-*-of-*{TFRECORD_SUFFIX}")


class ShardedRecordWriter:
    """Writes records round-robin into ``num_shards`` shard files, atomically.

    Each shard goes to a hidden temporary file beside its final name
    (:func:`~nasseg_tf.fileio.temp_path`) and is flushed and renamed into place
    (:func:`~nasseg_tf.fileio.replace`) by :meth:`close`. Leaving the ``with`` block on
    an exception calls :meth:`abort`, which deletes the temporary files, so readers
    never see a partly written shard. Temporaries of the split's shards that killed
    writers left in ``output_dir`` are removed first.

    Example:
        >>> with ShardedRecordWriter(out_dir, "train", num_shards=4) as writer:
        ...     for example in examples:
        ...         writer.write(example)
        >>> writer.paths  # the four shard files
    """

    def __init__(self, output_dir: str, split: str, num_shards: int):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
        fileio.makedirs(output_dir)
        fileio.clean_stale_temps(output_dir, f".{glob.escape(split)}-*-of-*"
                                 f"{TFRECORD_SUFFIX}{fileio.TEMP_MARKER}*")
        self.paths = [os.path.join(output_dir, shard_filename(split, i, num_shards))
                      for i in range(num_shards)]
        self._tmp_paths = [fileio.temp_path(p) for p in self.paths]
        self._writers = [tf.io.TFRecordWriter(p) for p in self._tmp_paths]
        self.num_written = 0

    def write(self, record: Union[tf.train.Example, bytes]) -> None:
        """Appends one example (or serialized example) to the next shard."""
        if isinstance(record, tf.train.Example):
            record = record.SerializeToString()
        self._writers[self.num_written % len(self._writers)].write(record)
        self.num_written += 1

    def _close_writers(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers = []

    def close(self) -> List[str]:
        """Finishes every shard and renames it into place; returns the shard paths."""
        self._close_writers()
        for tmp, final in zip(self._tmp_paths, self.paths):
            fileio.replace(tmp, final)
        return list(self.paths)

    def abort(self) -> None:
        """Discards everything written so far."""
        self._close_writers()
        for tmp in self._tmp_paths:
            fileio.remove(tmp)

    def __enter__(self) -> "ShardedRecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def install_shards(tmp_dir: str, output_dir: str,
                   files: Dict[str, List[str]]) -> Dict[str, List[str]]:
    """Moves finished shards into ``output_dir`` and deletes stale shards there.

    Args:
        tmp_dir: Folder holding the new shards (on the same file system).
        output_dir: Destination folder.
        files: ``{split: [shard basenames]}`` to move.

    Returns:
        ``{split: [final shard paths]}``. Older shards of the same splits that are
        not part of the new set (e.g. a different shard count) are removed, so a
        split's glob pattern matches exactly the new files.
    """
    installed = {}
    for split, names in files.items():
        for name in names:
            fileio.replace(os.path.join(tmp_dir, name), os.path.join(output_dir, name))
        for path in fileio.glob(shard_pattern(output_dir, split)):
            if os.path.basename(path) not in names:
                fileio.remove(path)
        installed[split] = [os.path.join(output_dir, name) for name in names]
    return installed


def write_sharded(examples: Iterable[Union[tf.train.Example, bytes]], output_dir: str,
                  split: str, num_shards: int) -> List[str]:
    """Writes ``examples`` into ``num_shards`` atomic shards; returns their paths."""
    with ShardedRecordWriter(output_dir, split, num_shards) as writer:
        for example in examples:
            writer.write(example)
    return writer.paths


# ---------------------------------------------------------------------------------------
# Parsing and validation inside tf.data
# ---------------------------------------------------------------------------------------
def parse_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses and decodes one serialized DeepLab example (graph-safe).

    Args:
        serialized: Scalar string tensor.

    Returns:
        Dict with ``image`` (``uint8 [H, W, 3]``), ``label`` (``uint8 [H, W, 1]``),
        ``filename`` (string), ``height`` and ``width`` (``int64``, as recorded).
    """
    features = tf.io.parse_single_example(serialized, _FEATURE_SPEC)
    image = tf.io.decode_image(features[IMAGE_ENCODED], channels=3, dtype=tf.uint8,
                               expand_animations=False)
    label = tf.io.decode_image(features[LABEL_ENCODED], channels=1, dtype=tf.uint8,
                               expand_animations=False)
    return {
        "image": image,
        "label": label,
        "filename": features[IMAGE_FILENAME],
        "height": features[IMAGE_HEIGHT],
        "width": features[IMAGE_WIDTH],
    }


def validation_asserts(example: Dict[str, tf.Tensor], num_classes: int,
                       ignore_label: int = 255) -> List[tf.Operation]:
    """``tf.debugging.Assert`` ops that check one parsed example.

    The checks: decoded image and label have the same height and width; the recorded
    height/width (when non-zero) equal the decoded size; every label value is below
    ``num_classes`` or equals ``ignore_label``. Each failure message names the record.
    """
    filename = example["filename"]
    image_hw = tf.shape(example["image"], out_type=tf.int64)[:2]
    label_hw = tf.shape(example["label"], out_type=tf.int64)[:2]
    recorded_hw = tf.stack([example["height"], example["width"]])
    label = tf.cast(example["label"], tf.int32)
    valid = tf.logical_or(label < num_classes, tf.equal(label, ignore_label))
    worst = tf.reduce_max(tf.where(valid, tf.zeros_like(label), label))
    return [
        tf.debugging.Assert(
            tf.reduce_all(tf.equal(image_hw, label_hw)),
            ["Record", filename, "image size", image_hw, "differs from label size",
             label_hw]),
        tf.debugging.Assert(
            tf.logical_or(tf.reduce_all(tf.equal(recorded_hw, 0)),
                          tf.reduce_all(tf.equal(recorded_hw, image_hw))),
            ["Record", filename, "recorded height/width", recorded_hw,
             "differ from the decoded image size", image_hw]),
        tf.debugging.Assert(
            tf.reduce_all(valid),
            ["Record", filename, "has label value", worst, f"outside [0, {num_classes})"
             f" that is not the ignore label {ignore_label}"]),
    ]


def validate_example(example: Dict[str, tf.Tensor], num_classes: int,
                     ignore_label: int = 255) -> Dict[str, tf.Tensor]:
    """Returns ``example`` with image and label gated on :func:`validation_asserts`."""
    checks = validation_asserts(example, num_classes, ignore_label)
    with tf.control_dependencies(checks):
        return dict(example, image=tf.identity(example["image"]),
                    label=tf.identity(example["label"]))


# ---------------------------------------------------------------------------------------
# Pure-Python checks (name the file and the record)
# ---------------------------------------------------------------------------------------
def resolve_files(file_pattern: Union[str, Sequence[str]]) -> List[str]:
    """Expands a glob pattern (or a list of patterns/paths) into a sorted file list.

    Raises:
        FileNotFoundError: If nothing matches; the message names the pattern.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    # Remote globs (tf.io.gfile) also match hidden names: never a writer's temporary.
    files = sorted({path for pattern in patterns for path in fileio.glob(pattern)
                    if fileio.temp_owner(path) is None})
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {file_pattern!r}.")
    return files


_HEADER = struct.Struct("<QI")  # record length, masked CRC32C of the length
_FOOTER_BYTES = 4  # masked CRC32C of the data


def _count_framed_records(path: str) -> int:
    """Walks the TFRecord framing of ``path`` without reading the payloads."""
    size = fileio.getsize(path)
    count, offset = 0, 0
    with fileio.open_file(path, "rb") as handle:
        while offset < size:
            header = handle.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise RecordError(f"TFRecord file {path} is truncated: record {count} "
                                  f"has an incomplete header at byte {offset}.")
            length, _ = _HEADER.unpack(header)
            end = offset + _HEADER.size + length + _FOOTER_BYTES
            if end > size:
                raise RecordError(f"TFRecord file {path} is truncated or corrupt: record "
                                  f"{count} at byte {offset} claims {length} bytes but "
                                  f"the file ends at byte {size}.")
            handle.seek(end)
            offset, count = end, count + 1
    return count


def iterate_records(path: str) -> Iterator[bytes]:
    """Yields the serialized records of one file, verifying their CRCs.

    Raises:
        RecordError: Naming ``path`` if the file is truncated or corrupt.
    """
    index = 0
    try:
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()
            index += 1
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as error:
        raise RecordError(f"TFRecord file {path} is truncated or corrupt at record "
                          f"{index}: {error.message}") from error


def check_tfrecord_files(paths: Union[str, Sequence[str]],
                         verify_crc: bool = False) -> Dict[str, int]:
    """Checks that TFRecord files are complete and returns their record counts.

    The default check walks the record framing only (a seek per record), which is
    cheap and catches truncated files; ``verify_crc=True`` also reads every payload
    and checks its CRC (as slow as reading the data once). TensorFlow's own
    ``DataLossError`` does not say which file is bad; these errors do.

    Args:
        paths: A glob pattern, or a list of patterns/paths.
        verify_crc: Also verify the checksums of every record.

    Returns:
        ``{path: number_of_records}``.

    Raises:
        RecordError: Naming the first bad file.
        FileNotFoundError: If nothing matches.
    """
    counts = {}
    for path in resolve_files(paths):
        counts[path] = _count_framed_records(path)
        if verify_crc:
            for _ in iterate_records(path):
                pass
    return counts


def _feature_bytes(example: tf.train.Example, key: str) -> bytes:
    values = example.features.feature[key].bytes_list.value
    return values[0] if values else b""


def _feature_int(example: tf.train.Example, key: str) -> int:
    values = example.features.feature[key].int64_list.value
    return int(values[0]) if values else 0


def _decode(data: bytes, what: str, where: str) -> Image.Image:
    """Decodes every pixel (so corrupt image data is found) without copying them."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except Exception as error:  # PIL raises several types for bad bytes.
        raise RecordError(f"{where}: cannot decode the {what}: {error}") from error


def check_label_array(label: np.ndarray, num_classes: int, ignore_label: int,
                      where: str) -> None:
    """Raises :class:`RecordError` naming ``where`` if ``label`` has invalid values."""
    bad = (label >= num_classes) & (label != ignore_label)
    if np.any(bad):
        values = np.unique(label[bad])
        raise RecordError(f"{where}: label values {values[:10].tolist()} are outside "
                          f"[0, {num_classes}) and not the ignore label {ignore_label}.")


def check_example(example: tf.train.Example, num_classes: int, ignore_label: int = 255,
                  where: str = "record") -> None:
    """Decodes one example in NumPy and checks sizes and label values.

    Raises:
        RecordError: With ``where`` and the record's filename in the message.
    """
    name = _feature_bytes(example, IMAGE_FILENAME).decode("utf-8", "replace")
    where = f"{where} ({name!r})"
    image = _decode(_feature_bytes(example, IMAGE_ENCODED), "image", where)
    image_hw = (image.height, image.width)
    label = np.asarray(_decode(_feature_bytes(example, LABEL_ENCODED), "label", where))
    if label.ndim != 2:
        raise RecordError(f"{where}: the label must have one channel, got shape "
                          f"{label.shape}.")
    if image_hw != label.shape:
        raise RecordError(f"{where}: image size {image_hw} differs from label "
                          f"size {label.shape}.")
    recorded = (_feature_int(example, IMAGE_HEIGHT), _feature_int(example, IMAGE_WIDTH))
    if recorded != (0, 0) and recorded != image_hw:
        raise RecordError(f"{where}: recorded height/width {recorded} differ from the "
                          f"decoded size {image_hw}.")
    check_label_array(label, num_classes, ignore_label, where)


def _check_file_records(path: str, num_classes: int, ignore_label: int) -> int:
    """Checks the CRC and contents of every record of ``path``; returns the count."""
    count = 0
    for index, serialized in enumerate(iterate_records(path)):
        where = f"{path} record {index}"
        try:
            example = tf.train.Example.FromString(serialized)
        except Exception as error:  # protobuf DecodeError
            raise RecordError(f"{where}: not a tf.train.Example: {error}") from error
        check_example(example, num_classes, ignore_label, where)
        count += 1
    return count


def validate_records(file_pattern: Union[str, Sequence[str]], num_classes: int,
                     ignore_label: int = 255) -> Dict[str, int]:
    """Decodes and checks every record of every matching file.

    Args:
        file_pattern: Glob pattern or list of patterns/paths.
        num_classes: Labels must be ``< num_classes`` or equal ``ignore_label``.
        ignore_label: The ignore value.

    Returns:
        ``{path: number_of_records}``.

    Raises:
        RecordError: Naming the file, the record index and the record's filename.
    """
    counts = check_tfrecord_files(file_pattern)
    for path in counts:
        _check_file_records(path, num_classes, ignore_label)
    return counts


# ---------------------------------------------------------------------------------------
# Cached full check (the input pipeline's pre-scan)
# ---------------------------------------------------------------------------------------
RECORD_CHECK_FORMAT = 1
"""Version of the record checks; changing it invalidates every cached verdict."""

CACHE_DIR_ENV = "NASSEG_CACHE_DIR"


def record_check_cache_dir() -> str:
    """Default folder of the record-check cache.

    ``$NASSEG_CACHE_DIR/record_checks`` when that variable is set and not empty, else
    ``~/.cache/nasseg_tf/record_checks``.
    """
    root = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "nasseg_tf")
    return os.path.join(root, "record_checks")


def _shard_key(path: str, num_classes: int, ignore_label: int) -> Dict[str, object]:
    """What a cached verdict is valid for: the shard as it is now, and the check."""
    # The inode too: a shard replaced by a rename is a new file. Remote shards
    # (tf.io.gfile.stat) have no inode, and on ram:// no modification time either.
    stat = fileio.stat(path)
    return {"format": RECORD_CHECK_FORMAT, "path": path, "size": stat.size,
            "mtime_ns": stat.mtime_ns, "inode": stat.inode,
            "num_classes": int(num_classes), "ignore_label": int(ignore_label)}


def _cache_entry_path(cache_dir: str, path: str, num_classes: int,
                      ignore_label: int) -> str:
    name = json.dumps([path, int(num_classes), int(ignore_label)])
    return os.path.join(cache_dir, hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
                        + ".json")


def _cached_count(entry_path: str, key: Dict[str, object]) -> Optional[int]:
    """The cached record count if ``entry_path`` holds a success for ``key``."""
    try:
        entry = fileio.read_json(entry_path)
    except (OSError, ValueError):  # missing, unreadable or garbled: check again
        return None
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in key.items()):
        return None
    records = entry.get("records")
    return records if isinstance(records, int) and records >= 0 else None


def _store_count(entry_path: str, key: Dict[str, object], records: int) -> Optional[str]:
    """Writes a success atomically; returns why it could not, or None."""
    try:
        fileio.atomic_write_json(entry_path, dict(key, records=records))
        return None
    except OSError as error:
        return str(error)


def _check_shard(path: str, num_classes: int, ignore_label: int,
                 cache_dir: str) -> Tuple[int, bool, Optional[str]]:
    """``(records, was cached, cache write failure)`` for one shard."""
    absolute = fileio.abspath(path)
    key = _shard_key(absolute, num_classes, ignore_label)
    entry_path = _cache_entry_path(cache_dir, absolute, num_classes, ignore_label)
    cached = _cached_count(entry_path, key)
    if cached is not None:
        return cached, True, None
    _count_framed_records(path)
    records = _check_file_records(path, num_classes, ignore_label)
    if _shard_key(absolute, num_classes, ignore_label) != key:
        return records, False, None  # changed while being read: do not vouch for it
    return records, False, _store_count(entry_path, key, records)


def check_records(paths: Union[str, Sequence[str]], num_classes: int,
                  ignore_label: int = 255, *,
                  cache_dir: Optional[str] = None) -> Dict[str, int]:
    """Checks every record of every file like :func:`validate_records`, with a cache.

    A shard whose success is cached for its current size and modification time (and
    the same ``num_classes`` / ``ignore_label``) is not read again; any other shard is
    walked (framing), read (CRCs) and each record decoded and checked, and its
    success cached. Failing to write the cache (e.g. a read-only home) only means the
    shard is checked again next time; it logs one warning.

    Args:
        paths: A glob pattern, or a list of patterns/paths.
        num_classes: Labels must be ``< num_classes`` or equal ``ignore_label``.
        ignore_label: The ignore value.
        cache_dir: Folder of the cache; default :func:`record_check_cache_dir`.

    Returns:
        ``{path: number_of_records}``.

    Raises:
        RecordError: Naming the first bad file (in sorted order), the record index and
            the record's filename.
        FileNotFoundError: If nothing matches.
    """
    files = resolve_files(paths)
    cache_dir = record_check_cache_dir() if cache_dir is None else cache_dir
    start = time.monotonic()
    # One shard after the other: threads gave no measurable speed-up on 2 cores.
    outcomes = [_check_shard(path, num_classes, ignore_label, cache_dir)
                for path in files]
    counts = {path: records for path, (records, _, _) in zip(files, outcomes)}
    checked = [path for path, (_, cached, _) in zip(files, outcomes) if not cached]
    if checked:
        logging.info("Checked %d records in %d TFRecord files in %.1f s (%d files "
                     "unchanged since their last check).",
                     sum(counts[path] for path in checked), len(checked),
                     time.monotonic() - start, len(files) - len(checked))
    failures = [failure for _, _, failure in outcomes if failure]
    if failures:
        logging.warning("Cannot cache record checks in %s (%s); the %d shard(s) will "
                        "be checked again next time.", cache_dir, failures[0],
                        len(failures))
    return counts
