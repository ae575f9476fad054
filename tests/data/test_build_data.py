"""Tests for nasseg_tf.data.build_data and its CLI, on tiny files in the real layouts."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from nasseg_tf import fileio
from nasseg_tf.cli import build_data as build_data_cli
from nasseg_tf.data import build_data
from nasseg_tf.data import datasets
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
        "dataset.json", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
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
        "dataset.json", "train-00000-of-00001.tfrecord", "val-00000-of-00003.tfrecord",
        "val-00001-of-00003.tfrecord", "val-00002-of-00003.tfrecord"]


def test_cli_flags_convert_the_generic_layout(generic_root, tmp_path):
    out = str(tmp_path / "cli_out")
    flag_values = flags.FlagValues()
    build_data_cli.define_flags(flag_values)
    flag_values(["build_data", "--dataset=generic", f"--root={generic_root[0]}",
                 f"--output_dir={out}", "--num_classes=4", "--num_shards=1", "--splits=val"])
    build_data_cli.convert(**{name: flag_values[name].value for name in (
        "dataset", "root", "output_dir", "splits", "num_shards", "num_classes")})
    assert sorted(os.listdir(out)) == ["dataset.json", "val-00000-of-00001.tfrecord"]


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
    assert sorted(os.listdir(out)) == ["dataset.json", "train-00000-of-00001.tfrecord",
                                       "val-00000-of-00001.tfrecord"]


def _write_16_bit(path, array):
    """Saves ``array`` (uint16) as a 16-bit greyscale PNG (PIL mode ``I;16``)."""
    array = np.asarray(array, np.uint16)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    image = Image.frombytes("I;16", array.shape[::-1], array.astype("<u2").tobytes())
    image.save(str(path))
    return str(path)


DEEP = np.array([[0, 257, 1000, 32768], [40000, 50000, 65000, 65535]], np.uint16)


@pytest.fixture
def deep_root(tmp_path, write_rgb, write_label):
    """Generic layout, split ``train``: ``deep.png`` is 16-bit greyscale, ``flat.png`` RGB."""
    root = tmp_path / "deep"
    _write_16_bit(root / "train" / "images" / "deep.png", DEEP)
    write_rgb(root / "train" / "images" / "flat.png", np.full((2, 4, 3), 9))
    for name in ("deep", "flat"):
        write_label(root / "train" / "labels" / f"{name}.png", np.zeros((2, 4)))
    assert Image.open(root / "train" / "images" / "deep.png").mode == "I;16"
    return str(root)


def _convert_deep(root, out, high_bit_depth):
    summary = build_data.ConversionSummary()
    shards = build_data.build_tfrecords("generic", root, out, num_classes=2, num_shards=1,
                                        splits=["train"], high_bit_depth=high_bit_depth,
                                        summary=summary)
    return _records(shards["train"])["deep"][0], summary


def test_16_bit_greyscale_image_is_scaled_to_8_bits_not_saturated(deep_root, tmp_path):
    image, summary = _convert_deep(deep_root, str(tmp_path / "out"), "scale")
    expected = np.rint(DEEP / 257.0).astype(np.uint8)  # 0, 1, 4, 128, 156, 195, 253, 255
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], expected)
    assert summary.high_bit_depth_images == {"I;16": 1} and summary.num_images == 2
    assert summary.describe() == (
        "1 of 2 images were high-bit-depth greyscale (I;16: 1) and were converted to "
        "8-bit RGB by scaling the full range linearly (16-bit value / 257, float value "
        "x 255) (high_bit_depth='scale').")


def test_stretch_maps_each_images_min_and_max_to_0_and_255(deep_root, tmp_path,
                                                          write_label):
    narrow = np.array([[1000, 1500, 2000, 3000]], np.uint16)
    _write_16_bit(os.path.join(deep_root, "train", "images", "deep.png"), narrow)
    write_label(os.path.join(deep_root, "train", "labels", "deep.png"), np.zeros((1, 4)))
    image, summary = _convert_deep(deep_root, str(tmp_path / "out"), "stretch")
    np.testing.assert_array_equal(image[0, :, 0], [0, 64, 128, 255])
    assert "by stretching each image's min..max to 0..255" in summary.describe()


def test_refuse_stops_the_conversion_naming_the_file_and_its_mode(deep_root, tmp_path):
    with pytest.raises(build_data.ConversionError,
                       match=r"Image .*train/images/deep\.png is high-bit-depth greyscale "
                             r"\(mode 'I;16'\)"):
        _convert_deep(deep_root, str(tmp_path / "out"), "refuse")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("array, mode, high_bit_depth, expected", [
    ([[0, 257, 65535]], "I", "scale", [0, 1, 255]),  # 32-bit that fits 16 bits
    ([[-5, 0, 70000]], "I", "stretch", [0, 0, 255]),
    ([[0.0, 0.5, 1.0]], "F", "scale", [0, 128, 255]),  # floats in [0, 1]
    ([[-2.0, 0.0, 2.0]], "F", "stretch", [0, 128, 255]),
    ([[7, 7, 7]], "I;16", "stretch", [0, 0, 0]),  # constant image
])
def test_32_bit_and_float_greyscale_are_reduced_by_their_range(array, mode,
                                                                high_bit_depth, expected):
    dtype = np.float32 if mode == "F" else (np.uint16 if mode == "I;16" else np.int32)
    image = Image.fromarray(np.asarray(array, dtype))
    assert image.mode == mode
    reduced = build_data.reduce_bit_depth(image, "x.tif", high_bit_depth)
    assert reduced.dtype == np.uint8
    np.testing.assert_array_equal(reduced[0], expected)


@pytest.mark.parametrize("array, dtype, message", [
    ([[0, 70000]], np.int32, r"x\.tif \(mode 'I'\) has values in \[0, 70000\], beyond 16"),
    ([[0.0, 3.0]], np.float32, r"Float image x\.tif has values in \[0, 3\]"),
    ([[0.0, np.nan]], np.float32, r"x\.tif \(mode 'F'\) has NaN"),
])
def test_scale_refuses_values_it_cannot_map_naming_the_file(array, dtype, message):
    image = Image.fromarray(np.asarray(array, dtype))
    with pytest.raises(build_data.ConversionError, match=message):
        build_data.reduce_bit_depth(image, "x.tif", "scale")


def test_unknown_high_bit_depth_is_rejected(deep_root, tmp_path):
    with pytest.raises(ValueError, match="high_bit_depth must be one of scale, stretch, "
                                         "refuse, got 'clip'"):
        _convert_deep(deep_root, str(tmp_path / "out"), "clip")


def _console_script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"console script {name} is not installed beside {sys.executable}")
    return path


def _build_data_tool(cwd, *args):
    """Runs the installed ``nasseg-build-data`` with ``args`` in a fresh process."""
    return subprocess.run(
        [_console_script("nasseg-build-data"), "--dataset=generic", *args],
        cwd=str(cwd), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=120)


def test_console_script_prints_the_high_bit_depth_summary_once(deep_root, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _build_data_tool(cwd, f"--root={deep_root}", "--output_dir=out",
                              "--num_classes=2", "--num_shards=1", "--splits=train",
                              "--high_bit_depth=stretch")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("high-bit-depth") == 1
    assert ("1 of 2 images were high-bit-depth greyscale (I;16: 1) and were converted "
            "to 8-bit RGB by stretching each image's min..max to 0..255") in result.stdout
    assert "train: 1 shards, 2 records in out" in result.stdout
    assert sorted(os.listdir(cwd / "out")) == ["dataset.json",
                                               "train-00000-of-00001.tfrecord"]


def test_console_script_reports_a_refused_image_in_one_line_with_status_2(deep_root,
                                                                          tmp_path):
    result = _build_data_tool(tmp_path, f"--root={deep_root}",
                              f"--output_dir={tmp_path / 'out'}", "--num_classes=2",
                              "--splits=train", "--high_bit_depth=refuse")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert re.search(r"^nasseg-build-data: error: Image .*deep\.png is high-bit-depth "
                     r"greyscale \(mode 'I;16'\)", result.stderr, re.M)


# ---------------------------------------------------------------------------------------
# The dataset description written beside the shards
# ---------------------------------------------------------------------------------------
def _expected_counts(labels, num_classes):
    counts = np.bincount(np.concatenate([label.ravel() for label in labels]), minlength=256)
    return [int(c) for c in counts[:num_classes]], int(counts[255])


def test_description_counts_records_and_pixels_per_class_of_each_split(generic_root,
                                                                      tmp_path):
    root, arrays = generic_root
    out = str(tmp_path / "out")
    build_data.build_tfrecords("generic", root, out, num_classes=4, num_shards=2)
    info = datasets.get_dataset_info(out)
    assert info.path == os.path.join(out, "dataset.json")
    assert info.name == "generic"  # the root folder's name
    assert info.class_names == ("class_0", "class_1", "class_2", "class_3")
    assert info.palette == datasets.generated_palette(4)
    assert info.split_sizes == {"train": 3, "val": 1}
    train_counts, train_ignored = _expected_counts([arrays[n][1] for n in "abc"], 4)
    val_counts, _ = _expected_counts([arrays["v"][1]], 4)
    assert dict(info.pixel_counts) == {"train": tuple(train_counts),
                                       "val": tuple(val_counts)}
    assert train_ignored > 0  # the fixture's labels hold ignore pixels, not counted
    raw = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert raw["splits"]["train"]["ignored_pixels"] == train_ignored
    assert sorted(fileio.glob(info.split_pattern("train"))) == sorted(
        os.path.join(out, f"train-0000{i}-of-00002.tfrecord") for i in range(2))


def test_class_names_and_palette_files_name_and_colour_the_classes(generic_root, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("sky\nroad \n\ncar\nperson\n\n")  # an empty line inside: refused
    with pytest.raises(ValueError, match=r"names\.txt: line 3 is empty"):
        build_data.read_class_names(str(names))
    names.write_text("sky\n road\ncar\nperson\n\n")
    palette = tmp_path / "palette.txt"
    palette.write_text("0 0 0\n255,0,0\n#00ff80\n1 2 3\n")
    out = str(tmp_path / "out")
    build_data.build_tfrecords(
        "generic", generic_root[0], out, num_shards=1, name="streets",
        class_names=build_data.read_class_names(str(names)),
        palette=build_data.read_palette(str(palette)))
    info = datasets.get_dataset_info(os.path.join(out, "dataset.json"))
    assert (info.name, info.num_classes) == ("streets", 4)  # num_classes from the names
    assert info.class_names == ("sky", "road", "car", "person")
    assert info.palette == ((0, 0, 0), (255, 0, 0), (0, 255, 128), (1, 2, 3))


@pytest.mark.parametrize("text, message", [
    ("a\nb\n", "2 class names for 4 classes"),
    ("a\nb\nc\na\n", "class name 'a' is given twice"),
])
def test_bad_class_names_are_refused_before_anything_is_written(generic_root, tmp_path,
                                                                text, message):
    names = tmp_path / "names.txt"
    names.write_text(text)
    with pytest.raises(ValueError, match=message):
        build_data.build_tfrecords("generic", generic_root[0], str(tmp_path / "out"),
                                   num_classes=4,
                                   class_names=build_data.read_class_names(str(names)))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("line", ["1 2", "1 2 300", "#12345", "red"])
def test_bad_palette_line_is_named(tmp_path, line):
    palette = tmp_path / "palette.txt"
    palette.write_text(f"1 2 3\n{line}\n")
    with pytest.raises(ValueError, match=r"palette\.txt: line 2 .* is not a colour"):
        build_data.read_palette(str(palette))


def test_registry_layout_describes_itself_with_the_registry_names(tmp_path, write_rgb,
                                                                 write_label):
    root = tmp_path / "cityscapes"
    write_rgb(root / "leftImg8bit/val/ulm/ulm_000000_000019_leftImg8bit.png",
              np.zeros((2, 3, 3)))
    write_label(root / "gtFine/val/ulm/ulm_000000_000019_gtFine_labelIds.png",
                np.array([[7, 7, 26], [0, 33, 7]]))
    out = str(tmp_path / "out")
    build_data.build_tfrecords("cityscapes", str(root), out, splits=["val"], num_shards=1)
    info = datasets.get_dataset_info(out)
    registry = datasets.get_dataset_info("cityscapes")
    assert (info.name, info.class_names, info.palette) == (
        "cityscapes", registry.class_names, registry.palette)
    counts = dict(info.pixel_counts)["val"]
    assert (counts[0], counts[13], counts[18], sum(counts)) == (3, 1, 1, 5)
    with pytest.raises(ValueError, match="class_names / palette are for the generic"):
        build_data.build_tfrecords("cityscapes", str(root), out, splits=["val"],
                                   class_names=registry.class_names)


def test_converting_one_split_keeps_the_others_when_the_classes_agree(generic_root,
                                                                     tmp_path):
    root, _ = generic_root
    out = str(tmp_path / "out")
    build_data.build_tfrecords("generic", root, out, num_classes=4, splits=["val"])
    build_data.build_tfrecords("generic", root, out, num_classes=4, splits=["train"])
    assert datasets.get_dataset_info(out).split_sizes == {"val": 1, "train": 3}
    names = [f"c{i}" for i in range(4)]
    build_data.build_tfrecords("generic", root, out, splits=["train"], class_names=names)
    assert datasets.get_dataset_info(out).split_sizes == {"train": 3}  # other classes


def test_tool_names_the_class_names_file_that_does_not_fit(generic_root, tmp_path):
    # In process: the one-line error with status 2 is the refused-image test's path.
    (tmp_path / "names.txt").write_text("sky\nroad\n")
    with pytest.raises(ValueError, match=r"^Class names file .*names\.txt: 2 class "
                                         r"names for 4 classes\.$"):
        build_data_cli.convert("generic", generic_root[0], str(tmp_path / "out"),
                               num_classes=4, class_names=str(tmp_path / "names.txt"))
    assert not os.path.exists(tmp_path / "out")
