"""Tests for nasseg_tf.data.datasets."""

import dataclasses
import json

import numpy as np
import pytest

from nasseg_tf.data import datasets


def _voc_devkit_colour_map(n):
    """The VOC devkit's bit-interleaving colour map, recomputed independently."""
    colours = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def test_registry_holds_the_paper_datasets_and_demo():
    assert set(datasets.list_datasets()) >= {
        "cityscapes", "pascal_voc2012", "ade20k", "pascal_person_part", "demo"}


@pytest.mark.parametrize("name,num_classes", [
    ("cityscapes", 19), ("pascal_voc2012", 21), ("ade20k", 150),
    ("pascal_person_part", 7), ("demo", 8)])
def test_each_dataset_has_one_name_and_colour_per_class(name, num_classes):
    info = datasets.get_dataset_info(name)
    assert info.num_classes == num_classes
    assert info.ignore_label == 255
    assert len(info.class_names) == len(set(info.class_names)) == num_classes
    assert info.palette_array().shape == (num_classes, 3)


def test_unknown_dataset_error_lists_known_names():
    with pytest.raises(ValueError, match="'kitti'.*cityscapes.*pascal_voc2012"):
        datasets.get_dataset_info("kitti")


def test_cityscapes_has_standard_train_classes_and_colours():
    info = datasets.get_dataset_info("cityscapes")
    assert info.class_names[:3] == ("road", "sidewalk", "building")
    assert info.class_names[-1] == "bicycle"
    assert info.palette[0] == (128, 64, 128) and info.palette[13] == (0, 0, 142)
    assert sorted(datasets.CITYSCAPES_LABEL_ID_TO_TRAIN_ID.values()) == list(range(19))
    assert info.split_sizes == {"train": 2975, "val": 500, "test": 1525}


def test_voc_and_person_part_palettes_equal_the_devkit_colour_map():
    voc = datasets.get_dataset_info("pascal_voc2012")
    assert voc.palette == _voc_devkit_colour_map(21)
    assert voc.class_names[0] == "background" and voc.class_names[15] == "person"
    assert datasets.get_dataset_info("pascal_person_part").palette == _voc_devkit_colour_map(7)


def test_ade20k_documents_its_label_mapping():
    info = datasets.get_dataset_info("ade20k")
    assert info.class_names[:3] == ("wall", "building", "sky")
    assert info.class_names[-1] == "flag"
    assert "0" in info.label_mapping and "255" in info.label_mapping
    assert "k - 1" in info.label_mapping


def test_register_dataset_rejects_duplicates_and_inconsistent_descriptions():
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_dataset(datasets.get_dataset_info("demo"))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        datasets.DatasetInfo("bad", 3, class_names=("a", "b"), palette=((0, 0, 0),) * 3)
    with pytest.raises(ValueError, match="ignore_label 1 collides"):
        datasets.DatasetInfo("bad", 3, ignore_label=1, class_names=("a", "b", "c"),
                             palette=((0, 0, 0),) * 3)


def test_registered_custom_dataset_is_found_by_name(monkeypatch):
    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))
    info = datasets.DatasetInfo("tiny_test_set", 2, class_names=("a", "b"),
                                palette=((1, 2, 3), (4, 5, 6)))
    datasets.register_dataset(info)
    assert datasets.get_dataset_info("tiny_test_set") is info


def test_dataset_info_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        datasets.get_dataset_info("demo").num_classes = 3


def test_colorize_paints_classes_and_ignore():
    info = datasets.get_dataset_info("cityscapes")
    picture = info.colorize(np.array([[0, 13], [255, 200]]), ignore_color=(9, 9, 9))
    assert picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[0, 0], (128, 64, 128))
    np.testing.assert_array_equal(picture[0, 1], (0, 0, 142))
    np.testing.assert_array_equal(picture[1], [(9, 9, 9), (9, 9, 9)])


# --------------------------------------------------------------------------------------
# Description files
# --------------------------------------------------------------------------------------
def _info(**changes):
    fields = dict(name="flowers", num_classes=3, class_names=("bg", "petal", "stem"),
                  palette=((0, 0, 0), (220, 20, 60), (107, 142, 35)))
    fields.update(changes)
    return datasets.DatasetInfo(**fields)


SPLITS = {"train": {"shards": "train-*-of-*.tfrecord", "num_records": 5,
                    "pixel_counts": [10, 20, 30], "ignored_pixels": 4},
          "val": {"shards": "val-*-of-*.tfrecord", "num_records": 2,
                  "pixel_counts": [1, 2, 3]}}


def test_description_file_round_trips_through_its_folder_and_its_path(tmp_path):
    path = datasets.write_description(str(tmp_path), datasets.make_description(
        _info(), SPLITS))
    assert path == str(tmp_path / "dataset.json")
    by_folder = datasets.get_dataset_info(str(tmp_path))
    assert by_folder == datasets.get_dataset_info(path)
    assert by_folder.path == path
    assert (by_folder.name, by_folder.class_names, by_folder.palette) == (
        "flowers", ("bg", "petal", "stem"), ((0, 0, 0), (220, 20, 60), (107, 142, 35)))
    assert by_folder.split_sizes == {"train": 5, "val": 2}
    assert by_folder.split_pattern("val") == str(tmp_path / "val-*-of-*.tfrecord")
    assert by_folder.split_pattern("test") is None
    assert dict(by_folder.pixel_counts)["train"] == (10, 20, 30)
    text = (tmp_path / "dataset.json").read_text()
    assert '"class_names": ["bg", "petal", "stem"]' in text  # readable, editable
    assert json.loads(text)["version"] == datasets.DESCRIPTION_VERSION


def test_a_relative_folder_is_found_from_the_working_directory(tmp_path, monkeypatch):
    datasets.write_description(str(tmp_path / "mine"), datasets.make_description(
        _info(), SPLITS))
    monkeypatch.chdir(tmp_path)
    info = datasets.get_dataset_info("mine")
    assert info.path == str(tmp_path / "mine" / "dataset.json")  # made absolute


def test_registry_names_win_over_folders_of_the_same_name(tmp_path, monkeypatch):
    datasets.write_description(str(tmp_path / "demo"), datasets.make_description(
        _info(), SPLITS))
    monkeypatch.chdir(tmp_path)
    assert datasets.get_dataset_info("demo") is datasets.DEMO
    assert datasets.get_dataset_info("./demo").name == "flowers"


def test_missing_description_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"No dataset description at {tmp_path}"):
        datasets.get_dataset_info(str(tmp_path))
    with pytest.raises(ValueError, match="known datasets: .*cityscapes.*dataset.json"):
        datasets.get_dataset_info("flowerz")


def _broken(obj, key_path, value):
    *parents, last = key_path
    for key in parents:
        obj = obj[key]
    if value is KeyError:
        del obj[last]
    else:
        obj[last] = value


@pytest.mark.parametrize("key_path, value, message", [
    (("num_classes",), KeyError, "missing field 'num_classes'"),
    (("num_classes",), "3", "field 'num_classes' must be an integer"),
    (("class_names",), ["bg", "petal"], "field 'class_names': 2 class names for 3"),
    (("class_names",), ["bg", "", "stem"], "the name of class 1 is empty"),
    (("class_names",), ["bg", "bg", "stem"], "class name 'bg' is given twice"),
    (("palette",), [[0, 0, 0], [1, 2, 3]], "field 'palette': 2 colours for 3 classes"),
    (("palette",), [[0, 0, 0], [1, 2, 300], [0, 0, 1]], "colour of class 1"),
    (("ignore_label",), 2, "'ignore_label' \\(2\\) collides"),
    (("version",), 2, "format version 2 is not readable"),
    (("format",), "other", "field 'format' must be 'nasseg_tf.dataset'"),
    (("splits", "val", "pixel_counts"), [1, 2], "splits.val: field 'pixel_counts' must "
                                                "hold 3"),
    (("splits", "train", "shards"), KeyError, "splits.train: missing field 'shards'"),
    (("splits", "train", "num_records"), -1, "'num_records' is negative"),
])
def test_bad_description_names_its_file_and_field(tmp_path, key_path, value, message):
    obj = datasets.make_description(_info(), SPLITS)
    _broken(obj, key_path, value)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(datasets.DescriptionError,
                       match=f"^Dataset description {path}: .*{message}"):
        datasets.get_dataset_info(str(tmp_path))


def test_bad_json_is_named(tmp_path):
    (tmp_path / "dataset.json").write_text('{"format": "nasseg_tf.dataset", ')
    with pytest.raises(datasets.DescriptionError, match=f"{tmp_path}/dataset.json: not "
                                                        "valid JSON"):
        datasets.get_dataset_info(str(tmp_path / "dataset.json"))


def test_write_description_refuses_what_it_could_not_read_back(tmp_path):
    obj = datasets.make_description(_info(), SPLITS)
    obj["splits"]["val"]["pixel_counts"] = [1]
    with pytest.raises(datasets.DescriptionError, match="pixel_counts"):
        datasets.write_description(str(tmp_path), obj)
    assert not (tmp_path / "dataset.json").exists()


def test_description_on_a_remote_file_system_keeps_remote_shard_patterns():
    folder = "ram://nasseg_test_datasets/flowers"
    datasets.write_description(folder, datasets.make_description(_info(), SPLITS))
    info = datasets.get_dataset_info(folder)
    assert info.path == folder + "/dataset.json"
    assert info.split_pattern("train") == folder + "/train-*-of-*.tfrecord"


@pytest.mark.parametrize("num_classes", [1, 3, 19, 150, 255])
def test_generated_palette_is_deterministic_distinct_and_never_black(num_classes):
    palette = datasets.generated_palette(num_classes)
    assert palette == datasets.generated_palette(num_classes)
    assert len(set(palette)) == num_classes
    assert (0, 0, 0) not in palette
    assert datasets.generated_palette(num_classes + 5)[:num_classes] == palette
