"""Tests for nasseg_tf.data.inputs: what Data.dataset names and how a run saves and
reads back its data paths (the run-relative helpers of nasseg_tf.runfiles with them)."""

import os

import pytest

from nasseg_tf import runfiles
from nasseg_tf.data import datasets
from nasseg_tf.data.inputs import DataConfig


@pytest.fixture
def described(tmp_path):
    """A dataset description in ``tmp_path/data`` with train and val shard files."""
    folder = tmp_path / "data"
    info = datasets.DatasetInfo("flowers", 2, class_names=("bg", "petal"),
                                palette=((0, 0, 0), (9, 9, 9)))
    split = {"num_records": 1, "pixel_counts": [1, 1]}
    datasets.write_description(str(folder), datasets.make_description(info, {
        "train": dict(split, shards="train-*-of-*.tfrecord"),
        "val": dict(split, shards="val-*-of-*.tfrecord"),
        "test": dict(split, shards="test-*-of-*.tfrecord")}))
    for name in ("train", "val", "test"):
        (folder / f"{name}-00000-of-00001.tfrecord").write_bytes(b"")
    return folder


def test_a_description_folder_gives_classes_and_default_patterns(described, tmp_path):
    info, train, evaluation = DataConfig(dataset=str(described)).resolve(str(tmp_path))
    assert info.class_names == ("bg", "petal")
    assert train == str(described / "train-*-of-*.tfrecord")
    assert evaluation == str(described / "val-*-of-*.tfrecord")
    _, _, evaluation = DataConfig(dataset=str(described / "dataset.json"),
                                  eval_split="test").resolve(str(tmp_path))
    assert evaluation == str(described / "test-*-of-*.tfrecord")
    _, train, _ = DataConfig(dataset=str(described), train_pattern="/x/t-*").resolve("r")
    assert train == "/x/t-*"  # a given pattern wins


def test_a_missing_split_names_the_description_and_what_it_has(described, tmp_path):
    with pytest.raises(ValueError, match=r"dataset.json has no split 'train_aug' \(it "
                                         r"has: train, val, test\)"):
        DataConfig(dataset=str(described), train_split="train_aug").resolve(str(tmp_path))


def test_saved_config_names_the_description_absolutely(described, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = DataConfig(dataset="data").resolved(str(tmp_path / "runs" / "r1"))
    assert saved.dataset == str(described / "dataset.json")
    assert saved.train_pattern == str(described / "train-*-of-*.tfrecord")
    assert DataConfig(dataset="data").absolute().dataset == saved.dataset
    assert DataConfig(dataset="cityscapes").absolute().dataset == "cityscapes"


def test_paths_inside_the_run_are_saved_relative_and_found_after_a_move(tmp_path,
                                                                        monkeypatch):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "val-0.tfrecord").write_bytes(b"")
    outside = tmp_path / "outside-0.tfrecord"
    outside.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    saved = DataConfig(dataset="cityscapes", train_pattern="outside-*.tfrecord",
                       eval_pattern="run/data/val-*.tfrecord").resolved(str(run))
    assert saved.eval_pattern == os.path.join("data", "val-*.tfrecord")
    assert saved.train_pattern == str(tmp_path / "outside-*.tfrecord")
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    os.rename(run, moved)
    monkeypatch.chdir(moved.parent)  # neither the old place nor the run folder
    loaded = saved.in_run(str(moved))
    assert loaded.eval_pattern == str(moved / "data" / "val-*.tfrecord")
    assert loaded.train_pattern == saved.train_pattern


def test_a_relative_path_given_at_evaluation_is_found_from_the_working_directory(
        tmp_path, monkeypatch):
    (tmp_path / "mine-0.tfrecord").write_bytes(b"")
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path)
    loaded = DataConfig(dataset="cityscapes",
                        eval_pattern="mine-*.tfrecord").in_run(str(tmp_path / "run"))
    assert loaded.eval_pattern == str(tmp_path / "mine-*.tfrecord")


def test_run_relative_keeps_outside_and_remote_paths_absolute(tmp_path):
    run = str(tmp_path / "run")
    assert runfiles.run_relative(run, os.path.join(run, "a", "b.json")) == os.path.join(
        "a", "b.json")
    assert runfiles.run_relative(run, str(tmp_path / "runner" / "x")) == str(
        tmp_path / "runner" / "x")  # a sibling sharing the name's prefix is outside
    assert runfiles.run_relative(run, run) == run
    assert runfiles.run_relative(run, "ram://b/x") == "ram://b/x"
    assert runfiles.run_relative("ram://b/run", str(tmp_path)) == str(tmp_path)
    assert runfiles.run_relative(run, None) is None
    assert runfiles.locate(run, "ram://b/x") == "ram://b/x"
    assert runfiles.locate(run, "/abs/x") == "/abs/x"


def test_check_names_a_bad_dataset_before_anything_is_written(described, tmp_path):
    assert DataConfig(dataset=str(described)).check().name == "flowers"
    assert DataConfig().check().name == "demo"  # demo data would be generated
    with pytest.raises(ValueError, match="Data.train_pattern is not set for dataset "
                                         "'cityscapes'"):
        DataConfig(dataset="cityscapes").check()
    (tmp_path / "bad.json").write_text('{"format": "nasseg_tf.dataset", "version": 1}')
    with pytest.raises(datasets.DescriptionError, match="bad.json: missing field 'name'"):
        DataConfig(dataset=str(tmp_path / "bad.json")).check()
    with pytest.raises(FileNotFoundError, match="No dataset description at"):
        DataConfig(dataset=str(tmp_path / "nowhere") + "/").check()
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "data"]  # nothing written
