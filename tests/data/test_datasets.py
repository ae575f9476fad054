"""Tests for nasseg_tf.data.datasets."""

import dataclasses

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
