"""Runs whose folders are remote: TensorFlow's in-memory ``ram://`` file system stands
in for ``gs://`` (every path with a URL scheme goes through ``tf.io.gfile``).

``ram://`` lives inside one process, so these run in-process: a subprocess (a console
script) would see an empty file system. Each test works in a fresh ``ram://`` folder
and from a fresh working directory, and checks that nothing was written locally instead
(a local ``os.makedirs("ram://x")`` quietly makes a folder named ``ram:``).

Two quirks of ``ram://`` that ``gs://`` does not share, which our code must survive:
any prefix of a file's name counts as a folder (``isdir("ram://d/ckpt-2")`` is true
next to ``ckpt-2.index``), and opening an existing file for writing appends instead of
truncating (only writes through a fresh name and a rename are correct there).
"""

import glob
import json
import os
import tempfile
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf import fileio, runfiles
from nasseg_tf.data import build_dataset, demo, ensure_demo_dataset

pytestmark = pytest.mark.e2e


@pytest.fixture
def ram(monkeypatch, tmp_path):
    """A fresh ``ram://`` folder; the working directory is an empty local folder, which
    must stay empty."""
    monkeypatch.chdir(tmp_path)
    folder = f"ram://nasseg_remote_{uuid.uuid4().hex[:8]}"
    yield folder
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)
    assert os.listdir(tmp_path) == [], "a remote path was written as a local one"


def _files(folder):
    """Every file below ``folder``, relative to it (sorted)."""
    out = []
    for root, _, names in tf.io.gfile.walk(folder):
        out += [os.path.join(root, n)[len(folder) + 1:] for n in names]
    return sorted(out)


def _no_temporaries(folder):
    return [f for f in _files(folder) if fileio.TEMP_MARKER in f] == []


def test_demo_data_on_ram_is_written_once_and_read_by_the_pipeline(ram, monkeypatch,
                                                                     tmp_path):
    data_dir = os.path.join(ram, "data")
    patterns = ensure_demo_dataset(data_dir, num_train=4, num_val=2, height=24, width=24)
    assert _files(data_dir) == ["demo_manifest.json"] + [
        f"{split}-0000{i}-of-00002.tfrecord" for split in ("train", "val") for i in (0, 1)]
    monkeypatch.setattr(demo, "generate_demo_example",
                        lambda *a: pytest.fail("regenerated although current"))
    assert ensure_demo_dataset(data_dir, num_train=4, num_val=2, height=24,
                               width=24) == patterns
    cache = str(tmp_path.parent / f"{tmp_path.name}-checks")  # outside the cwd
    dataset = build_dataset(patterns["val"], num_classes=8, training=False,
                            check_cache_dir=cache)
    shapes = [tuple(image.shape) for image, _ in dataset]
    assert shapes == [(1, 24, 24, 3)] * 2
    entries = [json.loads(open(p, encoding="utf-8").read())
               for p in glob.glob(os.path.join(cache, "*.json"))]
    assert sorted(e["path"] for e in entries) == tf.io.gfile.glob(patterns["val"])
    assert {e["inode"] for e in entries} == {None}  # keys from gfile.stat


def test_a_remote_runs_demo_data_defaults_to_a_remote_sibling_folder(ram):
    from nasseg_tf.data.inputs import DataConfig

    config = DataConfig(dataset="demo", demo_num_train=2, demo_num_val=1,
                        demo_size=(24, 24))
    _, train, val = config.resolve(os.path.join(ram, "runs", "tiny"))
    assert train == os.path.join(ram, "runs", "demo_data", "train-*-of-00002.tfrecord")
    assert len(tf.io.gfile.glob(train)) == 2 and len(tf.io.gfile.glob(val)) == 2


def test_own_data_converted_into_ram_is_described_and_read(ram, tmp_path_factory):
    from PIL import Image
    from nasseg_tf.data import build_data, get_dataset_info

    root = tmp_path_factory.mktemp("generic")  # local sources, remote output
    rng = np.random.default_rng(0)
    for split, names in (("train", "ab"), ("val", "v")):
        for name in names:
            for kind, array in (("images", rng.integers(0, 256, (12, 16, 3))),
                                ("labels", rng.integers(0, 3, (12, 16)))):
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(
                    root / split / kind / f"{name}.png")
    out = os.path.join(ram, "own")
    build_data.build_tfrecords("generic", str(root), out, num_classes=3, num_shards=1)
    assert _files(out) == ["dataset.json", "train-00000-of-00001.tfrecord",
                           "val-00000-of-00001.tfrecord"]
    info = get_dataset_info(out)  # the description beside the shards
    assert info.num_classes == 3
    images = [tuple(image.shape) for image, _ in build_dataset(
        os.path.join(out, "val-*"), num_classes=3, training=False, check_files="framing")]
    assert images == [(1, 12, 16, 3)]


def test_run_files_and_keras_models_round_trip_through_ram(ram):
    runfiles.write_json(os.path.join(ram, "run", "run_info.json"), {"replicas": 1})
    assert runfiles.read_json(os.path.join(ram, "run", "run_info.json")) == {
        "replicas": 1}
    from nasseg_tf.train.experiment import save_keras_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    path = os.path.join(ram, "run", "model.keras")
    for _ in range(2):  # the second save replaces the first
        save_keras_model(model, path)
    x = np.arange(8, dtype="float32").reshape(2, 4)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert _files(os.path.join(ram, "run")) == ["model.keras", "run_info.json"]
    assert not glob.glob(os.path.join(tempfile.gettempdir(), ".model.keras.tmp~*"))


def test_checkpoints_on_ram_restore_and_interrupted_saves_are_removed(ram):
    from nasseg_tf.train.checkpointing import architecture_variable, has_architecture
    from nasseg_tf.train.loop import remove_interrupted_saves

    folder = os.path.join(ram, "run", "checkpoints")
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step,
                                     architecture=architecture_variable({"a": 1}))
    manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=2)
    for value in (2, 4):
        step.assign(value)
        manager.save(checkpoint_number=value)
    latest = tf.train.latest_checkpoint(folder)
    assert latest == os.path.join(folder, "ckpt-4")
    assert has_architecture(latest)  # though ram:// calls "ckpt-4" a folder too
    # What a kill during the save of step 6 leaves: its data, its index, its staging.
    fileio.makedirs(os.path.join(folder, "ckpt-6_temp"))
    for name in ("ckpt-6.index", "ckpt-6.data-00000-of-00001", "ckpt-6_temp/part"):
        fileio.write_file_synced(os.path.join(folder, name), b"partial")
    removed = remove_interrupted_saves(folder)
    assert sorted(os.path.basename(p) for p in removed) == [
        "ckpt-6.data-00000-of-00001", "ckpt-6.index", "ckpt-6_temp"]
    assert [f for f in _files(folder) if "ckpt-6" in f] == []
    step.assign(0)
    checkpoint.restore(latest).assert_existing_objects_matched()
    assert int(step.numpy()) == 4


def test_dpc_search_project_on_ram_is_written_and_resumed(ram, monkeypatch):
    for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(var, raising=False)
    from dpc_helpers import SPACE
    from nasseg_tf.data.inputs import DataConfig
    from nasseg_tf.search.dpc.objectives import (SyntheticObjectiveConfig,
                                                 synthetic_objective)
    from nasseg_tf.search.dpc.run import DPCSearchConfig, run_search
    from nasseg_tf.search_space.dpc import load_dpc_cell

    project = os.path.join(ram, "search")
    objective = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3, steps=40,
                                                                    eval_every=10))

    def search(max_trials):
        config = DPCSearchConfig(max_trials=max_trials, verbose=False,
                                 early_stopping_min_trials=3, leaderboard_every_s=0,
                                 save_top_k=3)
        return run_search(project, search=config, data=DataConfig(), argv=["test"],
                          objective_fn=objective)["leaderboard"]

    first = search(4)
    rows = search(6)  # a rerun resumes the project: two more trials
    assert len(first) == 4 and len(rows) == 6
    assert {r["trial_id"] for r in first} <= {r["trial_id"] for r in rows}
    files = _files(project)
    for name in ("oracle.json", "tuner0.json", "leaderboard.json", "leaderboard.csv",
                 "best_cell.json", "best_cell.png", "search_progress.png", "config.gin",
                 "top_cells/top_01.json", "top_cells/top_03.json"):
        assert name in files
    assert fileio.read_json(os.path.join(project, "leaderboard.json"))[
        "num_completed"] == 6
    assert isinstance(fileio.read_json(os.path.join(project, "tuner0.json")), dict)
    for row in rows:
        trial = os.path.join(project, f"trial_{row['trial_id']}")
        assert load_dpc_cell(os.path.join(trial, "cell.json")).to_config() == row["cell"]
        assert fileio.read_json(os.path.join(trial, "trial.json"))["status"] == (
            "COMPLETED")
    assert load_dpc_cell(os.path.join(project, "best_cell.json")).to_config() == (
        rows[0]["cell"])
    assert len([f for f in files if f.startswith("tensorboard/events.")]) == 1
    assert _no_temporaries(project)


def test_feature_cache_on_ram_is_built_once_without_a_lock(ram, caplog):
    from proxy_helpers import digest, make_cache

    data = ensure_demo_dataset(os.path.join(ram, "data"), num_train=4, num_val=2,
                               height=36, width=28, num_shards=1)
    root = os.path.join(ram, "feature_cache")
    built = make_cache(root, data).build_or_load()
    assert built.stats["built"] and built.folder.startswith(root)
    assert "remote file systems have no locks" in caplog.text
    again = make_cache(root, data).build_or_load()
    assert not again.stats["built"] and again.stats["examples_computed"] == 0
    assert digest(again) == digest(built)
    assert _no_temporaries(root)


def _tool_values(define_flags, body, argv):
    """``body``'s keyword arguments as the tool parses ``argv`` (defaults included),
    from flags defined on a private ``FlagValues``."""
    import inspect

    from absl import flags

    values = flags.FlagValues()
    define_flags(values)
    values(["tool", *argv])
    return {name: values[name].value for name in inspect.signature(body).parameters}


@pytest.mark.slow
def test_a_gs_style_run_trains_resumes_evaluates_and_exports_on_ram(ram, capsys):
    import gin_runs
    from nasseg_tf.cli import configs
    from nasseg_tf.cli import eval as eval_tool
    from nasseg_tf.cli import export as export_tool
    from nasseg_tf.export import saved_model

    run = os.path.join(ram, "runs", "tiny")
    bindings = [f"Data.data_dir = '{ram}/data'", "Training.checkpoint_every = 1",
                "Evaluation.max_images = 1"]
    configs.parse(["test/tiny.gin"], bindings + ["Training.steps = 1"])
    assert gin_runs.train(run)["metrics"]["step"] == 1
    configs.parse(["test/tiny.gin"], bindings + ["Training.steps = 2"])
    out = gin_runs.train(run)
    assert out["metrics"]["step"] == 2 and out["loop"].history[0]["step"] == 2  # resumed
    files = _files(run)
    for name in ("command_line.txt", "config.gin", "operative_config.gin",
                 "run_info.json", "eval_results.json", "model.keras",
                 "pictures/val_000.png", "checkpoints/checkpoint",
                 "checkpoints/ckpt-2.index"):
        assert name in files
    for board in ("train", "eval"):  # (ram:// lists no "eval" beside eval_results.json)
        assert tf.io.gfile.glob(os.path.join(run, board, "events.out.tfevents.*"))
    assert f"Data.data_dir = '{ram}/data'" in fileio.read_text(
        os.path.join(run, "config.gin"))

    capsys.readouterr()
    eval_tool.evaluate(**_tool_values(eval_tool.define_flags, eval_tool.evaluate,
                                      [f"--model_dir={run}"]))  # nasseg-eval's body
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 2 and printed["num_images"] == 1
    assert fileio.read_json(os.path.join(run, "eval_results.json"))["step"] == 2

    serving_base = os.path.join(ram, "serving")
    for _ in range(2):  # nasseg-export's body: TF Serving's numbered version folders
        export_tool.export(**_tool_values(export_tool.define_flags, export_tool.export,
                                          [f"--model_dir={run}",
                                           f"--export_dir={serving_base}"]))
    assert saved_model.versions(serving_base) == [1, 2]
    metadata = saved_model.load_metadata(serving_base)
    assert metadata["source"]["step"] == 2 and metadata["source"]["model_dir"] == run
    model, info, step = gin_runs.restore(run)
    assert step == 2 and metadata["num_classes"] == info.num_classes
    serving = saved_model.load_serving(serving_base)
    outputs = serving.signatures["serving_default"](images=tf.zeros([1, 32, 32, 3],
                                                                    tf.uint8))
    assert tuple(outputs["semantic"].shape) == (1, 32, 32)
    np.testing.assert_allclose(outputs["probabilities"], keras.ops.softmax(
        model(tf.zeros([1, 32, 32, 3])), axis=-1), atol=1e-5)
    assert _no_temporaries(ram)
    np.testing.assert_allclose(
        keras.saving.load_model(os.path.join(run, "model.keras"))(np.zeros(
            (1, 32, 32, 3), "float32")), model(np.zeros((1, 32, 32, 3), "float32")),
        atol=1e-5)
