"""Tests for nasseg_tf.data.tfrecord."""

import io
import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nasseg_tf.data import tfrecord


def _parse_all(path):
    return [{k: v.numpy() for k, v in tfrecord.parse_example(r).items()}
            for r in tf.data.TFRecordDataset(path)]


def test_record_roundtrip_equals_original_arrays(make_records, random_pair):
    image, label = random_pair(0, 20, 28, num_classes=5)
    (parsed,) = _parse_all(make_records([(image, label, "img_0")]))
    np.testing.assert_array_equal(parsed["image"], image)
    np.testing.assert_array_equal(parsed["label"][..., 0], label)
    assert parsed["image"].dtype == np.uint8 and parsed["label"].shape == (20, 28, 1)
    assert parsed["filename"] == b"img_0"
    assert (parsed["height"], parsed["width"]) == (20, 28)


def test_parse_decodes_jpeg_images(random_pair):
    _, label = random_pair(1, 16, 16, num_classes=3)
    ramp = np.linspace(0, 255, 16, dtype=np.uint8)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128), -1)
    image = np.ascontiguousarray(image, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=100)
    example = tfrecord.make_example(buffer.getvalue(), tfrecord.encode_png(label), "j",
                                    16, 16, image_format="jpeg")
    (parsed,) = [tfrecord.parse_example(example.SerializeToString())]
    assert parsed["image"].shape == (16, 16, 3)
    assert np.abs(parsed["image"].numpy().astype(int) - image).mean() < 8
    np.testing.assert_array_equal(parsed["label"].numpy()[..., 0], label)


def test_example_uses_deeplab_feature_keys(random_pair):
    image, label = random_pair(2, 8, 8, num_classes=3)
    example = tfrecord.example_from_arrays(image, label, "x")
    assert set(example.features.feature) == {
        "image/encoded", "image/filename", "image/format", "image/height", "image/width",
        "image/channels", "image/segmentation/class/encoded",
        "image/segmentation/class/format"}


def test_sharded_writer_writes_named_shards_round_robin(tmp_path, random_pair):
    examples = [tfrecord.example_from_arrays(*random_pair(i, 8, 8, 3), f"im{i}")
                for i in range(5)]
    paths = tfrecord.write_sharded(examples, str(tmp_path), "train", num_shards=2)
    assert [os.path.basename(p) for p in paths] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    names = [[r["filename"] for r in _parse_all(p)] for p in paths]
    assert names == [[b"im0", b"im2", b"im4"], [b"im1", b"im3"]]


def test_sharded_writer_leaves_no_files_when_interrupted(tmp_path, random_pair):
    example = tfrecord.example_from_arrays(*random_pair(0, 8, 8, 3), "a")
    with pytest.raises(RuntimeError):
        with tfrecord.ShardedRecordWriter(str(tmp_path), "val", 3) as writer:
            writer.write(example)
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_validate_records_counts_records_of_good_files(make_records, random_pair):
    path = make_records([(*random_pair(i, 12, 10, 4), f"ok{i}") for i in range(3)])
    assert tfrecord.validate_records(path, num_classes=4) == {path: 3}


def test_validate_records_names_record_with_label_out_of_range(make_records, random_pair):
    image, label = random_pair(0, 12, 10, 4)
    label[3, 3] = 7
    path = make_records([(*random_pair(1, 12, 10, 4), "fine"), (image, label, "bad_one")])
    with pytest.raises(tfrecord.RecordError, match=r"record 1 \('bad_one'\).*\[7\]"):
        tfrecord.validate_records(path, num_classes=4)


def test_validate_records_names_record_with_size_mismatch(make_records, random_pair):
    image, _ = random_pair(0, 12, 10, 4)
    _, label = random_pair(0, 12, 11, 4)
    path = make_records([(image, label, "mismatch")])
    with pytest.raises(tfrecord.RecordError, match="'mismatch'.*differs from label size"):
        tfrecord.validate_records(path, num_classes=4)


def _truncate(path, keep_bytes_from_end):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[:-keep_bytes_from_end])


def test_check_tfrecord_files_names_truncated_file(make_records, random_pair):
    good = make_records([(*random_pair(0, 8, 8, 3), "a")], "good.tfrecord")
    bad = make_records([(*random_pair(i, 8, 8, 3), f"b{i}") for i in range(2)], "bad.tfrecord")
    _truncate(bad, 20)
    with pytest.raises(tfrecord.RecordError, match="bad.tfrecord is truncated"):
        tfrecord.check_tfrecord_files([good, bad])
    with pytest.raises(tfrecord.RecordError, match="bad.tfrecord"):
        tfrecord.validate_records([good, bad], num_classes=3)


def test_check_tfrecord_files_with_crc_names_corrupt_file(make_records, random_pair):
    path = make_records([(*random_pair(0, 8, 8, 3), "a")], "flipped.tfrecord")
    data = bytearray(open(path, "rb").read())
    data[40] ^= 0xFF  # inside the payload: framing intact, checksum wrong
    open(path, "wb").write(bytes(data))
    assert tfrecord.check_tfrecord_files(path) == {path: 1}
    with pytest.raises(tfrecord.RecordError, match="flipped.tfrecord is truncated or corrupt"):
        tfrecord.check_tfrecord_files(path, verify_crc=True)


def test_resolve_files_error_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        tfrecord.resolve_files(pattern)


def _run_validation(path, num_classes):
    dataset = tf.data.TFRecordDataset(path).map(
        lambda r: tfrecord.validate_example(tfrecord.parse_example(r), num_classes)["label"])
    return list(dataset)


def test_tf_data_assert_names_record_with_label_out_of_range(make_records, random_pair):
    image, label = random_pair(0, 12, 10, 4)
    label[0, 0] = 9
    path = make_records([(image, label, "graph_bad_label")])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"graph_bad_label.*\[9\]"):
        _run_validation(path, num_classes=4)


def test_tf_data_assert_names_record_with_size_mismatch(make_records, random_pair):
    image, _ = random_pair(0, 12, 10, 4)
    _, label = random_pair(0, 13, 10, 4)
    path = make_records([(image, label, "graph_mismatch")])
    with pytest.raises(tf.errors.InvalidArgumentError, match="graph_mismatch.*label size"):
        _run_validation(path, num_classes=4)


def test_tf_data_validation_passes_ignore_label(make_records, random_pair):
    image, label = random_pair(0, 12, 10, 4, ignore_fraction=0.5)
    assert 255 in label
    (out,) = _run_validation(make_records([(image, label, "ok")]), num_classes=4)
    np.testing.assert_array_equal(out.numpy()[..., 0], label)


def test_check_records_counts_records_and_names_the_first_bad_file(make_records,
                                                                   random_pair, tmp_path):
    good = [make_records([(*random_pair(i, 8, 8, 3), f"g{i}")] * (i + 1), f"{i}.tfrecord")
            for i in range(3)]
    cache = str(tmp_path / "cache")
    counts = tfrecord.check_records(good, num_classes=3, cache_dir=cache)
    assert counts == {good[0]: 1, good[1]: 2, good[2]: 3}
    assert tfrecord.check_records(good, num_classes=3, cache_dir=cache) == counts
    image, label = random_pair(5, 8, 8, 3)
    label[0, 0] = 3
    bad = [make_records([(image, label, f"bad{i}")], f"x{i}.tfrecord") for i in range(2)]
    with pytest.raises(tfrecord.RecordError, match=r"x0\.tfrecord record 0 \('bad0'\)"):
        tfrecord.check_records(good + bad, num_classes=3, cache_dir=cache)


def test_remote_shards_are_written_checked_and_cached_by_their_gfile_stat(
        random_pair, tmp_path, monkeypatch):
    # ram:// is TensorFlow's in-memory file system, the tests' stand-in for gs://.
    folder = f"ram://tfrecord_test_{uuid.uuid4().hex}"
    pairs = [(*random_pair(i, 8, 8, 3), f"r{i}") for i in range(3)]
    paths = tfrecord.write_sharded((tfrecord.example_from_arrays(*p) for p in pairs),
                                   folder, "train", 2)
    pattern = tfrecord.shard_pattern(folder, "train")
    assert tfrecord.resolve_files(pattern) == paths  # no temporaries left to match
    assert tfrecord.check_tfrecord_files(pattern) == {paths[0]: 2, paths[1]: 1}
    checked = []
    original = tfrecord.check_example
    monkeypatch.setattr(tfrecord, "check_example",
                        lambda example, *a, **k: checked.append(1) or original(
                            example, *a, **k))
    cache = str(tmp_path / "cache")
    assert tfrecord.check_records(pattern, 3, cache_dir=cache) == {paths[0]: 2,
                                                                   paths[1]: 1}
    assert len(checked) == 3
    entry = json.loads((tmp_path / "cache" / os.listdir(cache)[0]).read_text())
    assert entry["path"] in paths and entry["inode"] is None  # gfile.stat: no inode
    assert tfrecord.check_records(pattern, 3, cache_dir=cache) == {paths[0]: 2,
                                                                   paths[1]: 1}
    assert len(checked) == 3  # cached
    tfrecord.write_sharded([tfrecord.example_from_arrays(*pairs[0])] * 2, folder,
                           "train", 2)  # rewritten, other sizes: checked again
    assert tfrecord.check_records(pattern, 3, cache_dir=cache) == {paths[0]: 1,
                                                                   paths[1]: 1}
    assert len(checked) == 5
    tf.io.gfile.rmtree(folder)


def test_check_records_ignores_a_garbled_cache_entry(make_records, random_pair, tmp_path,
                                                     monkeypatch):
    path = make_records([(*random_pair(0, 8, 8, 3), "a")])
    cache = tmp_path / "cache"
    tfrecord.check_records(path, num_classes=3, cache_dir=str(cache))
    (entry,) = cache.iterdir()
    entry.write_text('{"records": 1, "format"')  # e.g. a full disk
    calls = []
    monkeypatch.setattr(tfrecord, "check_example",
                        lambda *args, **kwargs: calls.append(args))
    assert tfrecord.check_records(path, num_classes=3, cache_dir=str(cache)) == {path: 1}
    assert len(calls) == 1
    assert json.loads(entry.read_text())["records"] == 1  # rewritten whole


def test_record_check_cache_dir_follows_nasseg_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NASSEG_CACHE_DIR", str(tmp_path))
    assert tfrecord.record_check_cache_dir() == str(tmp_path / "record_checks")
    monkeypatch.delenv("NASSEG_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tfrecord.record_check_cache_dir() == str(
        tmp_path / "home" / ".cache" / "nasseg_tf" / "record_checks")
