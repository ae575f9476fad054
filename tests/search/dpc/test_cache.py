"""The DPC proxy's feature cache: computed once, shared between processes, invalidated
when what it depends on changes, verified and rebuilt when corrupt."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from layer_checks import REPO
from proxy_helpers import BUILDER_CALLS, CROP, digest, make_cache, tiny_backbone
from nasseg_tf.fileio import TEMP_MARKER
from nasseg_tf.search.dpc.cache import CacheCorruptError, mobilenet_v2_cache
from nasseg_tf.train.checkpointing import variables_by_path

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


def test_cache_is_computed_once_and_reused(cache, data):
    assert cache.stats["built"] and cache.stats["backbone_batches"] == 3  # 24 crops / 8
    assert cache.feature_shape == (8, 8, 16) and cache.output_stride == 4
    features, labels = cache.arrays("train")
    assert features.dtype == np.float16 and features.shape == (16, 8, 8, 16)
    assert labels.dtype == np.uint8 and labels.shape == (16,) + CROP
    assert np.isfinite(features).all() and 0.1 < float(features.std()) < 10  # calibrated
    assert cache.num_examples("val") == 8
    mtimes = {f: os.stat(os.path.join(cache.folder, f)).st_mtime_ns
              for f in os.listdir(cache.folder)}

    calls = len(BUILDER_CALLS)
    again = make_cache(cache.cache_root, data).build_or_load()
    assert again.folder == cache.folder
    assert len(BUILDER_CALLS) == calls + 1  # built once to checksum its weights ...
    assert not again.stats["built"]  # ... but no crop ran through it
    assert again.stats["backbone_batches"] == again.stats["examples_computed"] == 0
    assert digest(again) == digest(cache)
    assert mtimes == {f: os.stat(os.path.join(cache.folder, f)).st_mtime_ns
                      for f in os.listdir(cache.folder)}
    again.build_or_load()  # idempotent
    assert again.stats["backbone_batches"] == 0


def test_val_crops_are_centered_and_padded_with_the_ignore_label(cache):
    images, labels = cache.crops("val")
    assert images.shape == (8,) + CROP + (3,)
    # 28 columns centre-padded to 32: two ignored columns on each side, none inside.
    assert (labels[:, :, :2] == 255).all() and (labels[:, :, -2:] == 255).all()
    assert (labels[:, :, 2:-2] != 255).all()
    np.testing.assert_array_equal(labels, cache.arrays("val")[1])


def test_datasets_batch_the_cached_examples(cache):
    features, labels = next(iter(cache.train_dataset(batch_size=6, seed=1)))
    assert features.dtype.name == "float32" and tuple(features.shape) == (6, 8, 8, 16)
    assert labels.dtype.name == "int32" and tuple(labels.shape) == (6,) + CROP
    batches = list(cache.val_dataset(batch_size=3))
    assert [int(b[0].shape[0]) for b in batches] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]),
                                  cache.arrays("val")[1])


def test_fingerprint_changes_with_weights_data_and_settings(data, tmp_path):
    root = tmp_path / "cache"
    base = make_cache(root, data)
    assert make_cache(root, data).fingerprint == base.fingerprint
    assert make_cache(root, data, seed=1).fingerprint != base.fingerprint
    assert make_cache(root, data, backbone_config={"width": 4}).fingerprint != base.fingerprint
    assert make_cache(root, data, crop_size=(24, 24)).fingerprint != base.fingerprint

    # Weights files: the same file gives the same fingerprint, changed weights another.
    model = make_cache(root, data, calibrate_bn=False).backbone_model()
    first, second = str(tmp_path / "a.weights.h5"), str(tmp_path / "b.weights.h5")
    model.save_weights(first)
    model.weights[0].assign(model.weights[0] + 1.0)
    model.save_weights(second)
    from_first = make_cache(root, data, weights=first)
    assert from_first.fingerprint == make_cache(root, data, weights=first).fingerprint
    assert from_first.fingerprint != make_cache(root, data, weights=second).fingerprint
    from_second = make_cache(root, data, weights=second)
    assert from_first.key["weights_sha256"] != from_second.key["weights_sha256"]
    # A training-loop style TensorFlow checkpoint (variables keyed by Keras path).
    prefix = tf.train.Checkpoint(model=variables_by_path(model.weights)).write(
        str(tmp_path / "ckpt" / "ckpt-1"))
    assert make_cache(root, data, weights=prefix).key["weights_sha256"] == (
        from_second.key["weights_sha256"])
    partial = tf.train.Checkpoint(model=dict(list(variables_by_path(
        model.weights).items())[1:])).write(str(tmp_path / "partial" / "ckpt-1"))
    with pytest.raises(ValueError, match=r"lacks 1 of tiny_backbone.s weights: conv0/kernel"):
        make_cache(root, data, weights=partial).fingerprint

    # Data files: a rewritten (here: touched) shard changes the fingerprint.
    copy = tmp_path / "data"
    shutil.copytree(os.path.dirname(data["train"]), copy)
    moved = {k: str(copy / os.path.basename(v)) for k, v in data.items()}
    before = make_cache(root, moved).fingerprint
    train_file = sorted(p for p in os.listdir(copy) if p.startswith("train"))[0]
    stat = os.stat(copy / train_file)
    os.utime(copy / train_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert make_cache(root, moved).fingerprint != before


def test_two_processes_compute_the_cache_once(data, tmp_path):
    script = tmp_path / "open_cache.py"
    script.write_text(textwrap.dedent('''
        import json, os, sys, time, hashlib
        import keras
        from nasseg_tf.search.dpc import cache as dpc_cache
        ''') + inspect.getsource(tiny_backbone) + textwrap.dedent('''
        root, train, val, barrier, me = sys.argv[1:6]
        compute = dpc_cache.FeatureCache._compute
        def slow_compute(self, tmp):  # keeps the builder inside the lock for a while
            time.sleep(2.0)
            return compute(self, tmp)
        dpc_cache.FeatureCache._compute = slow_compute
        cache = dpc_cache.FeatureCache(root, "tiny", tiny_backbone, {"width": 8}, train,
                                       val, "demo", (32, 32), shard_size=5,
                                       progress=False)
        cache.fingerprint
        open(os.path.join(barrier, me), "w").close()
        while len(os.listdir(barrier)) < 2:  # start both builds together
            time.sleep(0.01)
        cache.build_or_load()
        digest = hashlib.sha256()
        for split in ("train", "val"):
            for array in cache.arrays(split):
                digest.update(array.tobytes())
        print(json.dumps({"stats": cache.stats, "digest": digest.hexdigest()}))
        '''))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"),
                               data["train"], data["val"], str(barrier), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              text=True) for i in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["stats"]["built"] for r in results) == [False, True]
    waiter = next(r for r in results if not r["stats"]["built"])
    assert waiter["stats"]["waited_for_lock"] and waiter["stats"]["backbone_batches"] == 0
    assert results[0]["digest"] == results[1]["digest"]
    assert not [p for p in os.listdir(tmp_path / "cache") if TEMP_MARKER in p]


def _first_shard(cache_):
    return os.path.join(cache_.folder, cache_.manifest["splits"]["train"]["shards"][0]
                        ["features"]["file"])


def test_corrupt_shard_raises_a_clear_error_or_is_rebuilt(data, tmp_path):
    original = make_cache(tmp_path, data).build_or_load()
    reference = digest(original)
    shard = _first_shard(original)
    with open(shard, "r+b") as f:  # flip one byte of the payload, same size
        f.seek(-7, os.SEEK_END)
        byte = f.read(1)
        f.seek(-7, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CacheCorruptError, match=r"train-00000-features\.npy.*SHA-256"):
        make_cache(tmp_path, data, on_corrupt="raise").build_or_load()

    rebuilt = make_cache(tmp_path, data).build_or_load()
    assert rebuilt.stats["rebuilt_corrupt"] and rebuilt.stats["built"]
    assert digest(rebuilt) == reference
    assert not [p for p in os.listdir(tmp_path) if TEMP_MARKER in p]  # bad one deleted

    with open(shard, "r+b") as f:  # truncated
        f.truncate(100)
    with pytest.raises(CacheCorruptError, match="100 bytes"):
        make_cache(tmp_path, data, on_corrupt="raise").build_or_load()
    os.remove(os.path.join(rebuilt.folder, "done.json"))  # an incomplete folder
    with pytest.raises(CacheCorruptError, match="incomplete"):
        make_cache(tmp_path, data, on_corrupt="raise").build_or_load()
    assert digest(make_cache(tmp_path, data).build_or_load()) == reference


def test_mobilenet_v2_cache_has_320_alpha_channel_features_at_os16(data, tmp_path):
    cache_ = mobilenet_v2_cache(str(tmp_path), data["train"], data["val"], "demo",
                                (33, 33), depth_multiplier=0.35, shard_size=64,
                                progress=False).build_or_load()
    assert os.path.basename(cache_.folder).startswith("mobilenet_v2-")
    assert cache_.key["backbone_config"] == {"depth_multiplier": 0.35, "output_stride": 16}
    assert cache_.feature_shape == (3, 3, 112) and cache_.output_stride == 16  # 320·0.35
    features = cache_.arrays("train")[0]
    # Random init without calibration would give ~1e-7 (below float16's range).
    assert np.isfinite(features).all() and float(np.abs(features).max()) > 0.1
