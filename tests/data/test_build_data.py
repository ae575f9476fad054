"""Tests for nasseg_tf.data.build_data and its CLI, on tiny files in the real layouts."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from nasseg_tf.cli import build_data as build_data_cli
from nasseg_tf.data import build_data
from nasseg_tf.data import tfrecord

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _records(paths):
    """All records of the given shards, keyed by filename, as numpy arrays."""
    out = {}
    for path in paths:
        for serialized in tf.data.TFRecordDataset(path):
            parsed = tfrecord.parse_example(serialized)
            out[parsed["filename"].numpy().decode()] = (
                parsed["image"].numpy(), parsed["label"].numpy()[..., 0])
    return out


@pytest.fixture
def generic_root(tmp_path, write_rgb, write_label, random_pair):
    """``{root}/{split}/images`` + ``labels``: 3 train (png and jpg), 1 val."""
    root = tmp_path / "generic"
    arrays = {}
    for split, names in (("train", ["a", "b", "c"]), ("val", ["v"])):
        for i, name in enumerate(names):
            image, label = random_pair(i, 12, 16, num_classes=4)
            ext = ".jpg" if name == "b" else ".png"
            write_rgb(root / split / "images" / (name + ext), image)
            write_label(root / split / "labels" / (name + ".png"), label)
            arrays[name] = (image, label)
    return str(root), arrays


def test_generic_layout_roundtrips_images_and_labels(generic_root, tmp_path):
    root, arrays = generic_root
    out = str(tmp_path / "out")
    shards = build_data.build_tfrecords("generic", root, out, num_classes=4, num_shards=2)
    assert sorted(os.listdir(out)) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    records = _records(shards["train"] + shards["val"])
    assert sorted(records) == ["a", "b", "c", "v"]
    for name, (image, label) in arrays.items():
        np.testing.assert_array_equal(records[name][1], label)
        if name != "b":  # b is a JPEG: stored byte for byte, decoded lossy
            np.testing.assert_array_equal(records[name][0], image)


def test_cityscapes_labelids_map_to_trainids(tmp_path, write_rgb, write_label):
    root = tmp_path / "cityscapes"
    label_ids = np.array([[7, 8, 11, 26], [33, 0, 9, 34], [23, 24, 31, 255]], np.uint8)
    expected = np.array([[0, 1, 2, 13], [18, 255, 255, 255], [10, 11, 16, 255]], np.uint8)
    write_rgb(root / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png",
              np.full((3, 4, 3), 80, np.uint8))
    write_label(root / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png",
                label_ids)
    shards = build_data.build_tfrecords("cityscapes", str(root), str(tmp_path / "out"),
                                        splits=["val"], num_shards=1)
    records = _records(shards["val"])
    np.testing.assert_array_equal(records["aachen_000000_000019"][1], expected)


def test_full_cityscapes_table_covers_all_34_label_ids():
    lut = build_data.cityscapes_label_lut()
    trained = [i for i in range(34) if lut[i] != 255]
    assert len(trained) == 19 and sorted(lut[trained]) == list(range(19))
    assert all(lut[i] == 255 for i in range(34, 256))


def _write_voc(root, write_rgb, write_label, label_dir, ids, labels):
    for i, label in zip(ids, labels):
        write_rgb(root / "JPEGImages" / f"{i}.jpg", np.full(label.shape + (3,), 100, np.uint8))
        write_label(root / label_dir / f"{i}.png", label, palette=(label_dir ==
                                                                    "SegmentationClass"))
    (root / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")


def test_voc_palette_png_indices_are_the_labels(tmp_path, write_rgb, write_label):
    root = tmp_path / "VOC2012"
    label = np.array([[0, 15, 15], [255, 20, 0]], np.uint8)
    _write_voc(root, write_rgb, write_label, "SegmentationClass", ["2007_000032"], [label])
    shards = build_data.build_tfrecords("pascal_voc2012", str(root), str(tmp_path / "out"),
                                        splits=["train"], num_shards=1)
    np.testing.assert_array_equal(_records(shards["train"])["2007_000032"][1], label)


def test_voc_aug_reads_segmentation_class_aug(tmp_path, write_rgb, write_label):
    root = tmp_path / "VOC2012"
    labels = [np.array([[1, 2]], np.uint8), np.array([[3, 255]], np.uint8)]
    _write_voc(root, write_rgb, write_label, "SegmentationClassAug", ["x1", "x2"], labels)
    shards = build_data.build_tfrecords("pascal_voc2012_aug", str(root),
                                        str(tmp_path / "out"), splits=["train"])
    records = _records(shards["train"])
    np.testing.assert_array_equal(records["x2"][1], labels[1])


def test_ade20k_other_becomes_ignore_and_classes_shift_down(tmp_path, write_rgb,
                                                            write_label):
    base = tmp_path / "ade" / "ADEChallengeData2016"
    raw = np.array([[0, 1, 2], [150, 75, 0]], np.uint8)
    write_rgb(base / "images/validation/ADE_val_00000001.jpg", np.zeros((2, 3, 3)))
    write_label(base / "annotations/validation/ADE_val_00000001.png", raw)
    shards = build_data.build_tfrecords("ade20k", str(tmp_path / "ade"),
                                        str(tmp_path / "out"), splits=["val"])
    np.testing.assert_array_equal(_records(shards["val"])["ADE_val_00000001"][1],
                                  [[255, 0, 1], [149, 74, 255]])
    assert os.path.basename(shards["val"][0]).startswith("val-")


def test_missing_label_file_error_names_it(generic_root, tmp_path):
    root, _ = generic_root
    os.remove(os.path.join(root, "train", "labels", "b.png"))
    with pytest.raises(FileNotFoundError, match=r"labels/b\.png"):
        build_data.build_tfrecords("generic", root, str(tmp_path / "out"), num_classes=4)
    assert not os.path.exists(tmp_path / "out")


def test_missing_voc_split_list_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Segmentation/val\.txt"):
        build_data.build_tfrecords("pascal_voc2012", str(tmp_path), str(tmp_path / "o"),
                                   splits=["val"])


def test_missing_cityscapes_folder_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/train"):
        build_data.build_tfrecords("cityscapes", str(tmp_path), str(tmp_path / "o"),
                                   splits=["train"])


def test_label_out_of_range_names_file_and_leaves_nothing_behind(generic_root, tmp_path,
                                                                write_label):
    root, arrays = generic_root
    bad = arrays["v"][1].copy()
    bad[0, 0] = 4
    write_label(os.path.join(root, "val", "labels", "v.png"), bad)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")
    with pytest.raises(tfrecord.RecordError, match=r"val/labels/v\.png.*\[4\]"):
        build_data.build_tfrecords("generic", root, str(out), num_classes=4)
    assert os.listdir(out) == ["keep.txt"]  # train shards were not installed either


def test_size_mismatch_names_both_files(generic_root, tmp_path, write_label):
    root, _ = generic_root
    write_label(os.path.join(root, "train", "labels", "c.png"), np.zeros((12, 15)))
    with pytest.raises(build_data.ConversionError, match=r"images/c\.png is 12x16.*c\.png"):
        build_data.build_tfrecords("generic", root, str(tmp_path / "o"), num_classes=4)


def test_colour_label_png_is_rejected_naming_it(generic_root, tmp_path, write_rgb):
    root, _ = generic_root
    write_rgb(os.path.join(root, "val", "labels", "v.png"), np.zeros((12, 16, 3)))
    with pytest.raises(build_data.ConversionError, match=r"v\.png has mode 'RGB'"):
        build_data.build_tfrecords("generic", root, str(tmp_path / "o"), num_classes=4)


def test_unknown_layout_error_lists_known_layouts(tmp_path):
    with pytest.raises(ValueError, match="'kitti'.*ade20k.*cityscapes.*generic"):
        build_data.build_tfrecords("kitti", str(tmp_path), str(tmp_path / "o"))


def test_generic_layout_requires_num_classes(generic_root, tmp_path):
    with pytest.raises(ValueError, match="needs num_classes"):
        build_data.build_tfrecords("generic", generic_root[0], str(tmp_path / "o"))


def test_rebuild_with_other_shard_count_replaces_old_shards(generic_root, tmp_path):
    root, _ = generic_root
    out = str(tmp_path / "out")
    build_data.build_tfrecords("generic", root, out, num_classes=4, num_shards=3)
    build_data.build_tfrecords("generic", root, out, num_classes=4, num_shards=1,
                               splits=["train"])
    assert sorted(os.listdir(out)) == [
        "train-00000-of-00001.tfrecord", "val-00000-of-00003.tfrecord",
        "val-00001-of-00003.tfrecord", "val-00002-of-00003.tfrecord"]


def test_cli_flags_convert_the_generic_layout(generic_root, tmp_path):
    out = str(tmp_path / "cli_out")
    flag_values = flags.FlagValues()
    build_data_cli.define_flags(flag_values)
    flag_values(["build_data", "--dataset=generic", f"--root={generic_root[0]}",
                 f"--output_dir={out}", "--num_classes=4", "--num_shards=1", "--splits=val"])
    build_data_cli.convert(flag_values)
    assert os.listdir(out) == ["val-00000-of-00001.tfrecord"]


def test_cli_requires_dataset_root_and_output_dir():
    flag_values = flags.FlagValues()
    build_data_cli.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="dataset"):
        flag_values(["build_data", "--root=/x"])


def test_tools_script_runs_as_a_program(generic_root, tmp_path):
    out = str(tmp_path / "tool_out")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "build_data.py"),
         "--dataset=generic", f"--root={generic_root[0]}", f"--output_dir={out}",
         "--num_classes=4", "--num_shards=1"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["train-00000-of-00001.tfrecord",
                                       "val-00000-of-00001.tfrecord"]
