"""The DPC proxy task: feature cache (once, shared, invalidated, verified) and trials."""

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_checks import check_layer
from nasseg_tf.data import ensure_demo_dataset
from nasseg_tf.search.dpc_proxy import (CacheCorruptError, FeatureCache, ProxyConfig,
                                        ProxyHead, mobilenet_v2_cache, run_proxy_trial)
from nasseg_tf.train.checkpointing import variables_by_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CROP = (32, 32)
CELL = [{"op": "conv", "kernel": 3, "rate": [1, 1], "input": -1},
        {"op": "conv", "kernel": 1, "input": 0}]
BUILDER_CALLS = []


def tiny_backbone(images, width=8, output_stride=4):
    """A stand-in backbone builder with the signature of mobilenet_v2_backbone."""
    x = images
    for i, filters in enumerate((width, 2 * width)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return {"features": x, "low_level": None, "output_stride": output_stride}


def counting_backbone(images, **config):
    BUILDER_CALLS.append(config)
    return tiny_backbone(images, **config)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 36x28 images with 32x32 crops: train crops cut rows and pad columns; val crops
    # center-crop rows and center-pad columns.
    return ensure_demo_dataset(str(tmp_path_factory.mktemp("demo")), num_train=16,
                               num_val=8, height=36, width=28, num_shards=2)


def make_cache(root, data, **kwargs):
    args = dict(backbone_name="tiny", backbone_fn=counting_backbone,
                backbone_config={"width": 8}, train_pattern=data["train"],
                val_pattern=data["val"], dataset_info="demo", crop_size=CROP,
                shard_size=5, progress=False)
    args.update(kwargs)
    return FeatureCache(str(root), **args)


@pytest.fixture(scope="module")
def cache(data, tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("cache"), data).build_or_load()


def _digest(cache_):
    digest = hashlib.sha256()
    for split in ("train", "val"):
        for array in cache_.arrays(split):
            digest.update(array.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# The cache.


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
    assert _digest(again) == _digest(cache)
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
    with pytest.raises(ValueError, match="not in the checkpoint"):
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
        from nasseg_tf.search import dpc_proxy
        ''') + inspect.getsource(tiny_backbone) + textwrap.dedent('''
        root, train, val, barrier, me = sys.argv[1:6]
        compute = dpc_proxy.FeatureCache._compute
        def slow_compute(self, tmp):  # keeps the builder inside the lock for a while
            time.sleep(2.0)
            return compute(self, tmp)
        dpc_proxy.FeatureCache._compute = slow_compute
        cache = dpc_proxy.FeatureCache(root, "tiny", tiny_backbone, {"width": 8}, train,
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
    assert not [p for p in os.listdir(tmp_path / "cache") if p.startswith(".tmp")]


def _first_shard(cache_):
    return os.path.join(cache_.folder, cache_.manifest["splits"]["train"]["shards"][0]
                        ["features"]["file"])


def test_corrupt_shard_raises_a_clear_error_or_is_rebuilt(data, tmp_path):
    original = make_cache(tmp_path, data).build_or_load()
    reference = _digest(original)
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
    assert _digest(rebuilt) == reference

    with open(shard, "r+b") as f:  # truncated
        f.truncate(100)
    with pytest.raises(CacheCorruptError, match="100 bytes"):
        make_cache(tmp_path, data, on_corrupt="raise").build_or_load()
    os.remove(os.path.join(rebuilt.folder, "done.json"))  # an incomplete folder
    with pytest.raises(CacheCorruptError, match="incomplete"):
        make_cache(tmp_path, data, on_corrupt="raise").build_or_load()
    assert _digest(make_cache(tmp_path, data).build_or_load()) == reference


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


# --------------------------------------------------------------------------------------
# Trials.


def _config(**kwargs):
    args = dict(steps=40, batch_size=4, filters=8, learning_rate=0.05,
                eval_batch_size=8, stop_if_trivial=False)
    args.update(kwargs)
    return ProxyConfig(**args)


def test_proxy_trial_learns_and_beats_the_constant_predictor(cache):
    result = run_proxy_trial(CELL, cache, _config())
    assert 0.0 <= result["miou"] <= 1.0 and np.isfinite(result["miou"])
    assert result["steps"] == 40 and not result["stopped_early"]
    assert [s for s, _ in result["history"]] == [13, 27, 40]
    losses = [loss for _, loss in result["loss_history"]]
    assert losses[-1] < losses[0]
    # trivial_miou is the majority-class (constant) predictor's mIoU on the same crops.
    assert result["miou"] > result["trivial_miou"] > 0
    assert result["cell"][0]["rate"] == [1, 1]
    json.dumps(result)  # JSON-ready for the tuner


def test_should_stop_ends_a_trial_at_the_first_checkpoint(cache):
    calls = []

    def should_stop(step, miou):
        calls.append((step, miou))
        return True

    result = run_proxy_trial(CELL, cache, _config(), should_stop=should_stop)
    assert result["stopped_early"] and result["stop_reason"] == "should_stop"
    assert result["steps"] == 13 and calls == result["history"] == [(13, result["miou"])]


def test_trivial_rule_stops_before_should_stop_is_asked(cache):
    calls = []
    result = run_proxy_trial(CELL, cache, _config(steps=6, stop_if_trivial=True,
                                                  trivial_margin=1.0),
                             should_stop=lambda *args: calls.append(args))
    assert result["stop_reason"] == "trivial" and result["steps"] == 2 and not calls


def test_trial_rejects_a_wrong_output_stride(cache):
    with pytest.raises(ValueError, match="output stride 4"):
        run_proxy_trial(CELL, cache, _config(output_stride=16))


def test_proxy_config_is_gin_configurable_as_proxy():
    with gin.unlock_config():
        gin.clear_config()
        try:
            gin.parse_config(["Proxy.steps = 90", "Proxy.filters = 16"])
            config = ProxyConfig()
        finally:
            gin.clear_config()
    assert (config.steps, config.filters, config.batch_size) == (90, 16, 8)
    assert config.eval_steps() == [30, 60]
    assert config.resolved_bn_momentum() == pytest.approx(1 - 10 / 90)
    assert ProxyConfig().resolved_bn_momentum() == pytest.approx(0.9997, abs=5e-5)
    with pytest.raises(ValueError, match="eval_fractions"):
        ProxyConfig(eval_fractions=(0.5, 1.0))


def test_proxy_head_passes_layer_checks():
    check_layer(lambda: ProxyHead(CELL, 3, (17, 17), filters=4, output_stride=8),
                (2, 3, 3, 5), (2, 17, 17, 3))
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        ProxyHead(CELL, 3, (17, 17)))).output_size == (17, 17)
