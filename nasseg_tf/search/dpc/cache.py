"""The DPC proxy's feature cache: backbone features computed once, shared on disk.

Chen et al. 2018 ("Searching for Efficient Multi-Scale Architectures for Dense Image
Prediction", §3.3; SPEC §3.3) make the DPC search affordable with a *proxy task*: a
small backbone (MobileNet-v2, output stride 16) computes features of the training set
**once**; every candidate cell then trains only on those cached features
(:mod:`nasseg_tf.search.dpc.proxy`).

:class:`FeatureCache` computes and stores the features of the train and val splits
(sharded ``.npy`` files in a folder named by a fingerprint of everything they depend
on; safe to open from several processes at once); :func:`mobilenet_v2_cache` is the
paper's backbone. What the cache buys is measured by ``tools/benchmark.py dpc_proxy``
(figures in ``bench/README.md``).

Example::

    cache = mobilenet_v2_cache("/tmp/dpc_cache", patterns["train"], patterns["val"],
                               "demo", crop_size=(129, 129)).build_or_load()
"""

import dataclasses
import glob
import hashlib
import io
import itertools
import json
import os
import re
import time
import uuid

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf.data import build_dataset, get_dataset_info
from nasseg_tf import fileio
from nasseg_tf.data import tfrecord
from nasseg_tf.data.pipeline import MEAN_PIXEL, pad_pair, random_crop_pair
from nasseg_tf.fileio import (clean_stale_temps, discard_dir, exclusive_lock,
                              legacy_mkdtemp_glob, staging_dir, temp_glob,
                              write_file_synced)
from nasseg_tf.internals import flatten_layers
from nasseg_tf.progress import progress_bar
from nasseg_tf.train.warm_start import warm_start

# Bump when the cache's layout or the meaning of its contents changes: every existing
# cache then gets a new fingerprint and is recomputed.
CACHE_FORMAT_VERSION = 2  # 2: train crops drawn by the training pipeline's functions
MANIFEST_NAME = "done.json"
SPLITS = ("train", "val")
NORMALISATION = "x / 127.5 - 1"


class CacheCorruptError(RuntimeError):
    """A cache folder is incomplete or a shard does not match its recorded checksum.

    Attributes:
      folder: the cache folder.
      build_id: the ``build_id`` of the folder's manifest (None without a manifest),
        so that only the folder that was found bad is quarantined.
    """

    def __init__(self, message, folder=None, build_id=None):
        super().__init__(message)
        self.folder = folder
        self.build_id = build_id


# --------------------------------------------------------------------------------------
# Small helpers.


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _jsonable(value):
    """``value`` as plain JSON data (tuples become lists, keys sorted on dump)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _crop_or_pad_center(image, label, size, ignore_label):
    """Center crop / center pad (image 127.5, label ignore) to exactly ``size``."""
    for axis in (0, 1):
        have, want = image.shape[axis], size[axis]
        if have > want:
            start = (have - want) // 2
            index = [slice(None)] * 2
            index[axis] = slice(start, start + want)
            image, label = image[tuple(index)], label[tuple(index)]
        elif have < want:
            before = (want - have) // 2
            pad = [(0, 0)] * 2
            pad[axis] = (before, want - have - before)
            image = np.pad(image, pad + [(0, 0)], constant_values=MEAN_PIXEL)
            label = np.pad(label, pad, constant_values=ignore_label)
    return image, label


def _random_crop(image, label, size, ignore_label, seed):
    """The training pipeline's crop: pad bottom/right to at least ``size``
    (:func:`~nasseg_tf.data.pipeline.pad_pair`), then a window at a position drawn
    from the stateless ``seed`` (:func:`~nasseg_tf.data.pipeline.random_crop_pair`)."""
    image, label = pad_pair(tf.constant(image), tf.constant(label[..., None]), size,
                            ignore_label)
    image, label = random_crop_pair(image, label, size, tf.constant(seed, tf.int64))
    return image.numpy(), label.numpy()[..., 0]


def array_dataset(inputs, labels, batch_size, training, seed=0):
    """Batches of ``(float32 inputs, int32 labels)`` gathered from in-memory tensors.

    Training: every epoch a new permutation drawn from ``seed`` (reproducible), repeated
    forever, full batches only. Evaluation: in order, once, the last batch may be short.
    """
    count = int(inputs.shape[0])
    if count == 0:
        raise ValueError("no examples to batch")
    index = tf.data.Dataset.range(count)
    if training:
        index = index.shuffle(count, seed=int(seed), reshuffle_each_iteration=True).repeat()
    index = index.batch(int(batch_size), drop_remainder=training)

    def gather(i):
        return (tf.cast(tf.gather(inputs, i), tf.float32),
                tf.cast(tf.gather(labels, i), tf.int32))

    return index.map(gather).prefetch(2)


def _batch_norm_layers(model):
    return [layer for layer in flatten_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


# --------------------------------------------------------------------------------------
# The feature cache.


class FeatureCache:
    """Backbone features of a train and a val split, computed once, shared on disk.

    **What is stored.** Train: ``train_crops_per_image`` crops of ``crop_size`` per
    image at positions drawn from ``seed`` (images smaller than the crop are first
    padded at the bottom/right with 127.5 and the ignore label, as the training pipeline
    does); no scaling or flipping — the proxy trains on a fixed set of crops, as a cached
    proxy must. Val: one *center* crop (or symmetric pad) of ``crop_size`` per image, so
    that features of images of any size stack into one array; the proxy mIoU is
    therefore measured on those center crops, not on whole frames. Features are the
    backbone's output on the crop (``features`` of the builder's dict) in ``feature_dtype``
    (float16 by default, checked to be finite), ``[h, w, C]``; labels are ``uint8
    [crop_h, crop_w]`` at the crop resolution (the trial upsamples its logits to them).

    **Backbone.** ``backbone_fn(images, **backbone_config)`` is applied to a Keras
    tensor of crops normalised to [-1, 1] (``x / 127.5 - 1``) and returns a tensor or a
    dict with ``features`` (and optionally ``output_stride``), like
    :func:`nasseg_tf.models.mobilenet_v2.mobilenet_v2_backbone`. Weights:
    ``weights`` may be a ``.weights.h5`` file (``Model.load_weights``: same layer
    structure), or anything a training warm start takes
    (:func:`~nasseg_tf.train.warm_start.warm_start`): a training run or checkpoint of a
    segmenter with the same backbone (each backbone variable read by its Keras path),
    a saved ``.keras`` segmenter, or an official TF1 checkpoint (the ImageNet
    ``mobilenet_v2`` one, or a whole DeepLab model) — every backbone weight must be
    found, extra entries are ignored. Without ``weights`` the backbone is **randomly
    initialised** after ``keras.utils.set_random_seed(seed)`` (deterministic across
    processes; note the global side effect). No pretrained
    MobileNet-v2 weights ship with this package (the demo has none): random-init
    features are what a demo search ranks cells on. A random init's batch-norm
    statistics (mean 0, variance 1) do not fit its activations — MobileNet-v2's
    features then shrink to ~1e-7, below float16 — so with ``calibrate_bn`` (default:
    on for random init, off for loaded weights) the moving statistics are set once to
    the statistics of the first ``calibration_images`` training crops: one eager pass in
    training mode with every BN's momentum at 0 (each BN normalises by, and stores,
    the statistics of its actual input, so later layers see calibrated inputs).

    **Fingerprint.** The folder ``cache_root/<backbone_name>-<fingerprint>`` is named by
    the SHA-256 of: the format version, ``backbone_name``, ``backbone_config``, a
    checksum of the backbone weights as initialised/loaded (before calibration, which
    is a function of them and the data), each data file's absolute path, size and
    mtime, the dataset's classes and ignore label, the crop and preprocessing settings
    and the feature dtype. Anything changing gives a new folder (= invalidation; old
    folders are left for the user to delete). The builder's *code* is not hashed: change
    ``backbone_name`` or the config when it changes (a changed architecture usually
    changes the weight checksum anyway). Computing the fingerprint builds the backbone
    (a few seconds for MobileNet-v2) but runs no image through it.

    **Concurrency and integrity.** A finished cache is a folder installed by an atomic
    rename (:func:`nasseg_tf.fileio.staging_dir`: every file flushed to disk first),
    with ``done.json`` (shard names, sizes, SHA-256) written last. Processes
    that open a missing cache take an exclusive ``fcntl`` lock on
    ``cache_root/.<folder>.lock``; the first computes into a temporary folder and
    renames it into place, the others wait and then load it — the features are computed
    once. Loading checks every shard's size and (with ``verify``) SHA-256; a missing,
    truncated or altered shard raises :class:`CacheCorruptError` naming the file, or,
    with ``on_corrupt='rebuild'`` (default), the bad folder is moved aside and deleted
    (under the lock, only if no one replaced it already) and the cache is computed
    again. Loaded
    splits are held in memory (float16: Cityscapes' 2,975 train images at 769² crops and
    OS 16 take ~4.6 GB).

    Args:
      cache_root: folder holding cache folders (created).
      backbone_name: a name for the backbone (folder prefix; part of the fingerprint).
      backbone_fn: ``(images, **backbone_config) -> tensor or dict(features=...)``.
      backbone_config: JSON-able keyword arguments of ``backbone_fn``.
      train_pattern, val_pattern: DeepLab TFRecord glob patterns (or lists).
      dataset_info: a :class:`~nasseg_tf.data.DatasetInfo` or a registry name.
      crop_size: ``(height, width)`` of the stored crops (DeepLab sizes ``OS·k + 1``).
      weights: optional Keras weights file or TensorFlow checkpoint (see above).
      seed: random init and train-crop positions.
      train_crops_per_image: stored training crops per image.
      calibrate_bn: recalibrate BN statistics (None: only for random init).
      calibration_images: training crops used for the calibration.
      shard_size: examples per shard.
      compute_batch_size: crops per backbone call while computing.
      feature_dtype: ``'float16'`` or ``'float32'``.
      on_corrupt: ``'rebuild'`` or ``'raise'``.
      verify: check each shard's SHA-256 when loading (sizes are always checked).
      progress: progress bar while computing features.
      lock_timeout: seconds to wait for another process' build (None: forever).
    """

    def __init__(self, cache_root, backbone_name, backbone_fn, backbone_config,
                 train_pattern, val_pattern, dataset_info, crop_size, weights=None,
                 seed=0, train_crops_per_image=1, calibrate_bn=None,
                 calibration_images=16, shard_size=64, compute_batch_size=8,
                 feature_dtype="float16", on_corrupt="rebuild", verify=True,
                 progress=True, lock_timeout=None):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(backbone_name)):
            raise ValueError(f"backbone_name {backbone_name!r}: use letters, digits, "
                             "'_', '-' and '.' (it names a folder)")
        if on_corrupt not in ("rebuild", "raise"):
            raise ValueError(f"on_corrupt must be 'rebuild' or 'raise', got {on_corrupt!r}")
        if feature_dtype not in ("float16", "float32"):
            raise ValueError(f"feature_dtype must be 'float16' or 'float32', got "
                             f"{feature_dtype!r}")
        self.cache_root = fileio.abspath(cache_root)
        self.backbone_name = str(backbone_name)
        self.backbone_fn = backbone_fn
        self.backbone_config = _jsonable(dict(backbone_config or {}))
        self.patterns = {"train": train_pattern, "val": val_pattern}
        self.dataset_info = (get_dataset_info(dataset_info)
                             if isinstance(dataset_info, str) else dataset_info)
        if self.dataset_info.num_classes > 255 or not 0 <= self.dataset_info.ignore_label <= 255:
            raise ValueError("labels are cached as uint8: need num_classes <= 255 and "
                             "0 <= ignore_label <= 255")
        self.crop_size = tuple(int(s) for s in crop_size)
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be (height, width), got {crop_size!r}")
        self.weights = None if weights is None else os.fspath(weights)
        self.seed = int(seed)
        self.train_crops_per_image = int(train_crops_per_image)
        self.calibrate_bn = (self.weights is None) if calibrate_bn is None else bool(
            calibrate_bn)
        self.calibration_images = int(calibration_images)
        self.shard_size = int(shard_size)
        self.compute_batch_size = int(compute_batch_size)
        self.feature_dtype = feature_dtype
        self.on_corrupt = on_corrupt
        self.verify = bool(verify)
        self.progress = progress
        self.lock_timeout = lock_timeout
        self.stats = {"built": False, "waited_for_lock": False, "rebuilt_corrupt": False,
                      "backbone_batches": 0, "examples_computed": 0,
                      "compute_seconds": 0.0, "load_seconds": 0.0}
        self._backbone = None
        self._backbone_output_stride = None
        self._calibrated = False
        self._key = None
        self._fingerprint = None
        self._manifest = None
        self._tensors = None

    # Identity ---------------------------------------------------------------------

    def _data_files(self, split):
        return [(fileio.abspath(p), *fileio.stat(p)[:2])  # path, size, mtime (gfile)
                for p in tfrecord.resolve_files(self.patterns[split])]

    def _build_backbone(self):
        keras.utils.set_random_seed(self.seed)
        images = keras.Input(self.crop_size + (3,), name="images")
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(images)
        out = self.backbone_fn(x, **self.backbone_config)
        features = out["features"] if isinstance(out, dict) else out
        stride = out.get("output_stride") if isinstance(out, dict) else None
        model = keras.Model(images, features, name=f"{self.backbone_name}_backbone")
        if self.weights is not None:
            self._load_weights(model)
        return model, stride

    def _load_weights(self, model):
        """The backbone's weights from ``self.weights`` (see the class docstring)."""
        path = self.weights
        if path.endswith(".weights.h5"):
            if not fileio.exists(path):
                raise FileNotFoundError(f"backbone weights not found: {path}")
            model.load_weights(path)
            return
        # A training run / checkpoint, a .keras file or an official checkpoint; every
        # backbone weight must be there (a partly initialised backbone is a mistake).
        warm_start(model, path, require_all=True)

    def _weights_checksum(self, model):
        digest = hashlib.sha256()
        for weight in model.weights:  # creation order: independent of layer auto-names
            value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
            digest.update(f"{value.dtype.str}{value.shape};".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    def _ensure_identity(self):
        if self._key is not None:
            return
        self._backbone, self._backbone_output_stride = self._build_backbone()
        info = self.dataset_info
        self._key = {
            "format_version": CACHE_FORMAT_VERSION,
            "backbone_name": self.backbone_name,
            "backbone_config": self.backbone_config,
            "weights_sha256": self._weights_checksum(self._backbone),
            "data": {split: self._data_files(split) for split in SPLITS},
            "dataset": {"num_classes": info.num_classes, "ignore_label": info.ignore_label},
            "preprocessing": {
                "crop_size": list(self.crop_size),
                "normalisation": NORMALISATION,
                "train_crops_per_image": self.train_crops_per_image,
                "train_crop": "seeded random position; pad bottom/right 127.5 / ignore",
                "val_crop": "center crop / symmetric pad 127.5 / ignore",
                "seed": self.seed,
                "calibrate_bn": self.calibrate_bn,
                "calibration_images": self.calibration_images if self.calibrate_bn else 0,
            },
            "feature_dtype": self.feature_dtype,
        }
        text = json.dumps(_jsonable(self._key), sort_keys=True, separators=(",", ":"))
        self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def fingerprint(self):
        """The hex fingerprint naming the cache folder (builds the backbone once)."""
        self._ensure_identity()
        return self._fingerprint

    @property
    def key(self):
        """Everything the fingerprint hashes (a JSON-able dict)."""
        self._ensure_identity()
        return self._key

    @property
    def folder(self):
        return os.path.join(self.cache_root, f"{self.backbone_name}-{self.fingerprint}")

    def _lock_path(self):
        return os.path.join(self.cache_root, f".{os.path.basename(self.folder)}.lock")

    # Backbone and crops --------------------------------------------------------------

    def backbone_model(self):
        """The backbone as used for the cache: raw pixels (0..255) → features.

        Weights loaded or seeded, and BN statistics calibrated when ``calibrate_bn``.
        """
        self._ensure_identity()
        if self.calibrate_bn and not self._calibrated:
            crops = list(itertools.islice(self._crops("train"), self.calibration_images))
            if not crops:
                raise ValueError("no training images to calibrate the backbone with")
            batch = np.stack([image for image, _ in crops]).astype("float32")
            layers = _batch_norm_layers(self._backbone)
            momenta = [layer.momentum for layer in layers]
            for layer in layers:
                layer.momentum = 0.0
            try:
                self._backbone(batch, training=True)
            finally:
                for layer, momentum in zip(layers, momenta):
                    layer.momentum = momentum
            self._calibrated = True
        return self._backbone

    def _num_records(self, split):
        return sum(tfrecord.check_tfrecord_files(self.patterns[split]).values())

    def num_crops(self, split):
        """Number of crops of ``split`` (from the record counts, without reading)."""
        records = self._num_records(split)
        return records * (self.train_crops_per_image if split == "train" else 1)

    def _crops(self, split):
        info = self.dataset_info
        dataset = build_dataset(self.patterns[split], num_classes=info.num_classes,
                                ignore_label=info.ignore_label, training=False,
                                batch_size=1)
        for index, (image, label) in enumerate(dataset.as_numpy_iterator()):
            image, label = image[0], label[0].astype(np.uint8)
            if split == "train":
                for k in range(self.train_crops_per_image):
                    seed = [self.seed, index * self.train_crops_per_image + k]
                    yield _random_crop(image, label, self.crop_size, info.ignore_label,
                                       seed)
            else:
                yield _crop_or_pad_center(image, label, self.crop_size, info.ignore_label)

    def crops(self, split):
        """``(images float32 [n, H, W, 3] in 0..255, labels uint8 [n, H, W])``: exactly
        the crops whose features the cache stores (read again from the records)."""
        pairs = list(self._crops(split))
        return (np.stack([p[0] for p in pairs]).astype("float32"),
                np.stack([p[1] for p in pairs]))

    # Build ------------------------------------------------------------------------------

    def _compute_split(self, split, folder, feature_fn, bar):
        """Computes and writes one split's shards; returns its manifest entry."""
        shards, features, labels = [], [], []
        count = 0

        def flush():
            if not features:
                return
            f = np.concatenate(features)
            l = np.stack(labels)
            name = f"{split}-{len(shards):05d}"
            entry = {"count": int(f.shape[0])}
            for kind, array in (("features", f), ("labels", l)):
                data = _npy_bytes(array)
                filename = f"{name}-{kind}.npy"
                write_file_synced(os.path.join(folder, filename), data)
                entry[kind] = {"file": filename, "bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()}
            shards.append(entry)
            features.clear()
            labels.clear()

        batch_images, batch_labels = [], []

        def run_batch():
            nonlocal count
            if not batch_images:
                return
            out = np.asarray(feature_fn(np.stack(batch_images).astype("float32")))
            stored = out.astype(self.feature_dtype)
            if not np.all(np.isfinite(stored)):
                raise ValueError(
                    f"backbone features of {split} crops {count}..{count + len(out) - 1} "
                    f"are not finite in {self.feature_dtype} (max |x| = "
                    f"{np.nanmax(np.abs(out)):.3g}); use feature_dtype='float32' or "
                    "check the backbone weights")
            self.stats["backbone_batches"] += 1
            for i in range(len(stored)):
                features.append(stored[i:i + 1])
                labels.append(batch_labels[i])
                if len(labels) == self.shard_size:
                    flush()
            count += len(stored)
            self.stats["examples_computed"] += len(stored)
            if bar is not None:
                bar.add(len(stored))
            batch_images.clear()
            batch_labels.clear()

        for image, label in self._crops(split):
            batch_images.append(image)
            batch_labels.append(label)
            if len(batch_images) == self.compute_batch_size:
                run_batch()
        run_batch()
        flush()
        if not count:
            raise ValueError(f"the {split} split ({self.patterns[split]}) has no images")
        return {"num_examples": count, "shards": shards}

    def _compute(self, tmp):
        t0 = time.perf_counter()
        backbone = self.backbone_model()
        spec = tf.TensorSpec((None,) + self.crop_size + (3,), tf.float32)
        feature_fn = tf.function(lambda x: backbone(x, training=False),
                                 input_signature=[spec])
        total = sum(self.num_crops(split) for split in SPLITS)
        bar = progress_bar(total, unit_name="crop") if self.progress else None
        if bar is not None:
            print(f"Computing {self.backbone_name} features for the DPC proxy cache "
                  f"{os.path.basename(self.folder)} (once).")
        splits = {split: self._compute_split(split, tmp, feature_fn, bar)
                  for split in SPLITS}
        features_shape = list(backbone.output.shape[1:])
        stride = self._backbone_output_stride or int(round(
            (self.crop_size[0] - 1) / max(1, features_shape[0] - 1)))
        self.stats["compute_seconds"] = time.perf_counter() - t0
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "build_id": uuid.uuid4().hex,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "key": _jsonable(self._key),
            "feature_shape": features_shape,
            "feature_dtype": self.feature_dtype,
            "label_shape": list(self.crop_size),
            "output_stride": int(stride),
            "num_classes": self.dataset_info.num_classes,
            "ignore_label": self.dataset_info.ignore_label,
            "compute_seconds": self.stats["compute_seconds"],
            "splits": splits,
        }

    def _build_locked(self):
        """Computes the cache unless another process did; returns its manifest."""
        fileio.makedirs(self.cache_root)
        with exclusive_lock(self._lock_path(), self.lock_timeout) as waited:
            self.stats["waited_for_lock"] = self.stats["waited_for_lock"] or waited
            manifest = self._check_folder()
            if manifest is not None:
                return manifest
            # The lock holder is the only builder: every temporary of this cache is a
            # crashed build or quarantine (the last two: names before fileio's).
            name = os.path.basename(self.folder)
            for pattern in (temp_glob(self.folder), legacy_mkdtemp_glob(f".tmp-{name}-"),
                            glob.escape(f".corrupt-{name}-") + "[0-9a-f]" * 8):
                clean_stale_temps(self.cache_root, pattern, max_age_s=0)
            with staging_dir(self.folder) as tmp:
                manifest = self._compute(tmp)
                write_file_synced(os.path.join(tmp, MANIFEST_NAME),
                            (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
            self.stats["built"] = True
            return manifest

    def _quarantine_locked(self, error):
        """Moves the corrupt folder aside, unless someone already replaced it."""
        with exclusive_lock(self._lock_path(), self.lock_timeout):
            try:
                manifest = self._read_manifest()
            except CacheCorruptError:
                manifest = None
            current = manifest.get("build_id") if isinstance(manifest, dict) else None
            if fileio.isdir(self.folder) and current == error.build_id:
                discard_dir(self.folder)  # renamed aside first: never seen half deleted
        self.stats["rebuilt_corrupt"] = True

    # Load ---------------------------------------------------------------------------------

    def _read_manifest(self):
        path = os.path.join(self.folder, MANIFEST_NAME)
        try:
            return fileio.read_json(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CacheCorruptError(f"feature cache {self.folder}: unreadable "
                                    f"{MANIFEST_NAME} ({e})", self.folder) from None

    def _check_folder(self):
        """The manifest of a complete cache folder; None if there is no folder.

        Raises:
          CacheCorruptError: the folder exists but has no valid manifest, or a shard is
            missing or has the wrong size.
        """
        if not fileio.isdir(self.folder):
            return None
        manifest = self._read_manifest()
        if manifest is None:
            raise CacheCorruptError(
                f"feature cache {self.folder} has no {MANIFEST_NAME}: incomplete (folders "
                "are installed complete, so something removed it)", self.folder)
        build_id = manifest.get("build_id")
        if (manifest.get("format_version") != CACHE_FORMAT_VERSION
                or manifest.get("fingerprint") != self.fingerprint):
            raise CacheCorruptError(f"feature cache {self.folder}: {MANIFEST_NAME} is for "
                                    "another fingerprint or format", self.folder, build_id)
        try:
            shards = [(shard[kind]["file"], shard[kind]["bytes"]) for split in SPLITS
                      for shard in manifest["splits"][split]["shards"]
                      for kind in ("features", "labels")]
        except (KeyError, TypeError) as e:
            raise CacheCorruptError(f"feature cache {self.folder}: malformed "
                                    f"{MANIFEST_NAME} ({e!r})", self.folder,
                                    build_id) from None
        for filename, expected in shards:
            path = os.path.join(self.folder, filename)
            try:
                size = fileio.getsize(path)
            except OSError:
                raise CacheCorruptError(f"feature cache shard {path} is missing",
                                        self.folder, build_id) from None
            if size != expected:
                raise CacheCorruptError(
                    f"feature cache shard {path} has {size} bytes, {expected} expected "
                    "(truncated or overwritten)", self.folder, build_id)
        return manifest

    def _load_array(self, path, expected, build_id):
        try:
            data = fileio.read_bytes(path)
        except OSError as e:
            raise CacheCorruptError(f"feature cache shard {path}: {e}", self.folder,
                                    build_id) from None
        if len(data) != expected["bytes"] or (
                self.verify and hashlib.sha256(data).hexdigest() != expected["sha256"]):
            raise CacheCorruptError(
                f"feature cache shard {path} does not match its SHA-256 in "
                f"{MANIFEST_NAME}: the cache is corrupt (delete {self.folder} or open it "
                "with on_corrupt='rebuild')", self.folder, build_id)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:
            raise CacheCorruptError(f"feature cache shard {path}: {e}", self.folder,
                                    build_id) from None

    def _load(self, manifest):
        t0 = time.perf_counter()
        build_id = manifest["build_id"]
        tensors = {}
        for split in SPLITS:
            entry = manifest["splits"][split]
            n = entry["num_examples"]
            features = np.empty([n] + manifest["feature_shape"], manifest["feature_dtype"])
            labels = np.empty([n] + manifest["label_shape"], np.uint8)
            start = 0
            for shard in entry["shards"]:
                f = self._load_array(os.path.join(self.folder, shard["features"]["file"]),
                                     shard["features"], build_id)
                l = self._load_array(os.path.join(self.folder, shard["labels"]["file"]),
                                     shard["labels"], build_id)
                stop = start + shard["count"]
                if f.shape[0] != shard["count"] or l.shape[0] != shard["count"]:
                    raise CacheCorruptError(f"feature cache shard {shard['features']['file']}"
                                            ": wrong example count", self.folder, build_id)
                features[start:stop], labels[start:stop] = f, l
                start = stop
            if start != n:
                raise CacheCorruptError(f"feature cache {self.folder}: {split} has {start} "
                                        f"examples, {n} expected", self.folder, build_id)
            tensors[split] = (tf.convert_to_tensor(features), tf.convert_to_tensor(labels))
        self._tensors = tensors
        self._manifest = manifest
        self.stats["load_seconds"] = time.perf_counter() - t0

    def build_or_load(self):
        """Computes the cache if no process has, then loads and verifies it; ``self``.

        Idempotent and process-safe (see the class docstring).
        """
        if self._tensors is not None:
            return self
        for attempt in range(2):
            try:
                manifest = self._check_folder()
                if manifest is None:
                    manifest = self._build_locked()
                self._load(manifest)
                return self
            except CacheCorruptError as error:
                if self.on_corrupt != "rebuild" or attempt:
                    raise
                self._quarantine_locked(error)
        raise AssertionError("unreachable")

    # Access -------------------------------------------------------------------------------

    @property
    def manifest(self):
        self.build_or_load()
        return self._manifest

    @property
    def feature_shape(self):
        """``(h, w, C)`` of one example's features."""
        return tuple(self.manifest["feature_shape"])

    @property
    def output_stride(self):
        return int(self.manifest["output_stride"])

    @property
    def num_classes(self):
        return self.dataset_info.num_classes

    @property
    def ignore_label(self):
        return self.dataset_info.ignore_label

    def num_examples(self, split):
        return int(self.manifest["splits"][split]["num_examples"])

    def arrays(self, split):
        """``(features [n, h, w, C] feature_dtype, labels uint8 [n, H, W])`` numpy."""
        self.build_or_load()
        features, labels = self._tensors[split]
        return features.numpy(), labels.numpy()

    def train_dataset(self, batch_size, seed=0):
        """Endless shuffled batches ``(features float32, labels int32)`` of train."""
        self.build_or_load()
        return array_dataset(*self._tensors["train"], batch_size, True, seed)

    def val_dataset(self, batch_size):
        """One pass over val in order, ``(features float32, labels int32)``."""
        self.build_or_load()
        return array_dataset(*self._tensors["val"], batch_size, False)


def mobilenet_v2_cache(cache_root, train_pattern, val_pattern, dataset_info, crop_size,
                       depth_multiplier=1.0, output_stride=16, weights=None,
                       explicit_padding=None, **kwargs):
    """A :class:`FeatureCache` of MobileNet-v2 features (the paper's proxy backbone).

    ``weights=None`` gives the documented seeded random init with BN calibration (no
    pretrained MobileNet-v2 weights ship with the package). Other keyword arguments go
    to :class:`FeatureCache`. ``explicit_padding``: of the strided convs (None: the
    backbone's default, symmetric; False: TensorFlow 'SAME', as the zoo's models under
    the official numerics — set it so to cache features of a backbone trained in one).
    """
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.models.mobilenet_v2 import mobilenet_v2_backbone

    config = {"output_stride": int(output_stride),
              "depth_multiplier": float(depth_multiplier)}
    if explicit_padding is not None:  # only then: older caches keep their fingerprint
        config["explicit_padding"] = bool(explicit_padding)
    return FeatureCache(cache_root, "mobilenet_v2", mobilenet_v2_backbone, config,
                        train_pattern, val_pattern, dataset_info, crop_size,
                        weights=weights, **kwargs)


@dataclasses.dataclass(frozen=True)
class ProxyBackboneConfig:
    """The proxy's backbone and what its cache stores (gin ``ProxyBackbone``):
    MobileNet-v2 features (the paper: OS 16), see :func:`mobilenet_v2_cache` and
    :class:`FeatureCache`.

    ``crop_size``: the stored crops (DeepLab sizes ``16·k + 1``); ``weights``: a Keras
    weights file or training checkpoint of the backbone (None: seeded random init).
    """

    GIN_NAME = "ProxyBackbone"

    crop_size: tuple = (513, 513)
    depth_multiplier: float = 1.0
    output_stride: int = 16
    weights: str = None
    seed: int = 0
    train_crops_per_image: int = 1
    progress: bool = False
    explicit_padding: bool = None

    def cache(self, cache_root, train_pattern, val_pattern, dataset_info):
        """The :class:`FeatureCache` of this backbone on the given data."""
        return mobilenet_v2_cache(
            cache_root, train_pattern, val_pattern, dataset_info, tuple(self.crop_size),
            depth_multiplier=self.depth_multiplier, output_stride=self.output_stride,
            weights=self.weights, explicit_padding=self.explicit_padding, seed=self.seed,
            train_crops_per_image=self.train_crops_per_image, progress=self.progress)

