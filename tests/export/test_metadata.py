"""Export metadata: class fields from a dataset or generic ones, completion, reading it
back as a DatasetInfo (also metadata written before the class fields)."""

import json
import os

import pytest

from nasseg_tf.data import get_dataset_info
from nasseg_tf.export.metadata import (GENERIC_NOTE, METADATA_FILE, class_metadata,
                                       complete_metadata, info_from_metadata,
                                       read_metadata, write_metadata)


def test_dataset_classes_are_copied_and_generic_ones_made_up():
    info = get_dataset_info("cityscapes")
    classes = class_metadata(19, info)
    assert classes["class_names"][0] == "road" and classes["dataset"] == "cityscapes"
    assert classes["palette"][0] == list(info.palette[0])
    assert classes["generic_classes"] is False
    generic = class_metadata(3)
    assert generic["class_names"] == ["class_0", "class_1", "class_2"]
    assert generic["dataset"] is None and generic["generic_classes"] is True
    assert len({tuple(c) for c in generic["palette"]}) == 3
    assert "class_0..class_2" in GENERIC_NOTE.format(last=2)
    with pytest.raises(ValueError, match="19 classes but the model outputs 4"):
        class_metadata(4, info)


def test_completion_keeps_given_classes_and_fills_missing_ones():
    meta = complete_metadata({"model": "m", "note": 1}, 2, max_pixels=9)
    assert meta["class_names"] == ["class_0", "class_1"] and meta["note"] == 1
    assert (meta["format"], meta["version"], meta["max_pixels"]) == (
        "nasseg_tf.export", 1, 9)
    given = complete_metadata(class_metadata(19, get_dataset_info("cityscapes")), 19)
    assert given["class_names"][1] == "sidewalk"
    with pytest.raises(ValueError, match="names 19 classes but the model outputs 5"):
        complete_metadata(class_metadata(19, get_dataset_info("cityscapes")), 5)


def test_info_from_metadata_round_trip(tmp_path):
    info = get_dataset_info("demo")
    write_metadata(str(tmp_path), complete_metadata(class_metadata(8, info), 8))
    back = info_from_metadata(read_metadata(str(tmp_path)))
    assert back.class_names == info.class_names and back.palette == info.palette
    assert back.ignore_label == info.ignore_label and back.num_classes == 8


def test_old_metadata_names_its_dataset_and_none_is_an_error(tmp_path):
    assert info_from_metadata({"dataset": "demo", "max_pixels": 5}).name == "demo"
    with pytest.raises(ValueError, match="names no classes and no dataset"):
        info_from_metadata({"max_pixels": 5}, "export x")
    assert read_metadata(str(tmp_path)) is None
    with open(os.path.join(tmp_path, METADATA_FILE), "w", encoding="utf-8") as f:
        f.write("{broken")
    with pytest.raises(ValueError, match="not JSON"):
        read_metadata(str(tmp_path))
    bad = {"class_names": ["a"], "num_classes": 1, "palette": [[1, 2]]}
    with pytest.raises(ValueError, match="bad metadata"):
        info_from_metadata(json.loads(json.dumps(bad)))


def test_metadata_on_a_remote_filesystem():
    folder = f"ram://metadata_{os.getpid()}/export"
    write_metadata(folder, {"a": 1})
    assert read_metadata(folder) == {"a": 1}
