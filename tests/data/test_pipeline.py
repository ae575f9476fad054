"""Tests for nasseg_tf.data.pipeline."""

import os

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.data import pipeline
from nasseg_tf.data import tfrecord

NUM_CLASSES = 4


@pytest.fixture
def records(make_records, random_pair):
    """Six records of mixed sizes (20x24 and 16x28)."""
    pairs = [(*random_pair(i, *((20, 24) if i % 2 else (16, 28)), NUM_CLASSES), f"r{i}")
             for i in range(6)]
    return make_records(pairs), pairs


@pytest.fixture
def coded_records(make_records):
    """Images whose red channel is 40 * label, to check image/label alignment."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(4):
        label = rng.integers(0, NUM_CLASSES, (18, 22), dtype=np.uint8)
        image = np.stack([label * 40, rng.integers(0, 256, label.shape),
                          np.full(label.shape, i)], -1).astype(np.uint8)
        pairs.append((image, label, f"coded{i}"))
    return make_records(pairs)


def _train(path, **kwargs):
    args = dict(num_classes=NUM_CLASSES, training=True, batch_size=2, crop_size=(12, 14),
                seed=7, shuffle_buffer=8)
    args.update(kwargs)
    return pipeline.build_dataset(path, **args)


def _take(dataset, n):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_train_batches_have_crop_shape_dtype_and_raw_pixel_range(records):
    dataset = _train(records[0])
    assert dataset.element_spec[0].shape.as_list() == [2, 12, 14, 3]
    assert dataset.element_spec[1].shape.as_list() == [2, 12, 14]
    for image, label in _take(dataset, 5):
        assert image.dtype == np.float32 and label.dtype == np.int32
        assert image.min() >= 0 and image.max() <= 255 and image.max() > 50
        assert set(np.unique(label)) <= set(range(NUM_CLASSES)) | {255}


def test_train_pads_with_ignore_label_and_mean_pixel(coded_records):
    dataset = _train(coded_records, crop_size=(30, 40), min_scale=1.0, max_scale=1.0,
                     flip=False, batch_size=1)
    for image, label in _take(dataset, 4):
        padded = label[0] == 255
        assert padded[18:].all() and padded[:, 22:].all() and not padded[:18, :22].any()
        np.testing.assert_array_equal(image[0][padded], 127.5)


@pytest.mark.parametrize("flip", [False, True])
def test_random_crop_and_flip_keep_image_and_label_aligned(coded_records, flip):
    dataset = _train(coded_records, min_scale=1.0, max_scale=1.0, flip=flip)
    for image, label in _take(dataset, 6):
        np.testing.assert_array_equal(image[..., 0], label * 40.0)


def test_flip_mirrors_some_crops(coded_records):
    plain = _take(_train(coded_records, min_scale=1.0, max_scale=1.0, crop_size=(18, 22),
                         flip=False, batch_size=1), 8)
    flipped = _take(_train(coded_records, min_scale=1.0, max_scale=1.0, crop_size=(18, 22),
                           flip=True, batch_size=1), 8)
    mirrored = [np.array_equal(a[1], b[1][:, :, ::-1]) for a, b in zip(plain, flipped)]
    same = [np.array_equal(a[1], b[1]) for a, b in zip(plain, flipped)]
    assert any(mirrored) and any(same)


def _has_pairs(label):
    """Rows come in equal pairs (at offset 0 or 1), as after 2x nearest upscaling."""
    return any(np.array_equal(label[r::2][:7], label[r + 1::2][:7]) for r in (0, 1))


def test_random_scale_upscales_labels_with_nearest_neighbour(coded_records):
    dataset = _train(coded_records, min_scale=2.0, max_scale=2.0, crop_size=(16, 16))
    for image, labels in _take(dataset, 4):
        assert not (labels == 255).any()  # 2x upscaled 18x22 images cover the crop
        for label in labels:
            assert _has_pairs(label) and _has_pairs(label.T)


def test_same_seed_gives_identical_batches_and_other_seed_differs(records):
    first = _take(_train(records[0], seed=3), 4)
    again = _take(_train(records[0], seed=3), 4)
    other = _take(_train(records[0], seed=4), 4)
    for (a, b), (c, d) in zip(first, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert any(not np.array_equal(a[1], c[1]) for a, c in zip(first, other))


def test_scale_choices_follow_the_step_grid():
    np.testing.assert_allclose(pipeline.scale_choices(0.5, 2.0, 0.25),
                               [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    assert pipeline.scale_choices(0.5, 2.0, None) is None
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        pipeline.scale_choices(2.0, 1.0, 0.25)


def test_eval_yields_full_images_in_file_order_batch_one(records):
    path, pairs = records
    dataset = pipeline.build_dataset(path, num_classes=NUM_CLASSES, training=False)
    out = _take(dataset, 100)
    assert len(out) == len(pairs)
    for (image, label), (src_image, src_label, _) in zip(out, pairs):
        np.testing.assert_array_equal(image[0], src_image.astype(np.float32))
        np.testing.assert_array_equal(label[0], src_label)


def test_eval_pad_size_gives_static_shapes_padded_with_ignore(records):
    path, pairs = records
    dataset = pipeline.build_dataset(path, num_classes=NUM_CLASSES, training=False,
                                     batch_size=3, eval_pad_size=(24, 32))
    assert dataset.element_spec[0].shape.as_list() == [None, 24, 32, 3]
    image, label = _take(dataset, 1)[0]
    assert image.shape == (3, 24, 32, 3)
    np.testing.assert_array_equal(label[0, 16:], 255)
    np.testing.assert_array_equal(label[0, :16, :28], pairs[0][1])
    np.testing.assert_array_equal(image[1, :, 24:], 127.5)


def test_eval_pad_size_too_small_names_the_record(records):
    dataset = pipeline.build_dataset(records[0], num_classes=NUM_CLASSES, training=False,
                                     eval_pad_size=(16, 16))
    with pytest.raises(tf.errors.InvalidArgumentError, match="r0.*eval_pad_size"):
        _take(dataset, 1)


def test_eval_batches_pad_to_the_largest_image(records):
    dataset = pipeline.build_dataset(records[0], num_classes=NUM_CLASSES, training=False,
                                     batch_size=2)
    image, label = _take(dataset, 1)[0]
    assert image.shape == (2, 20, 28, 3)
    np.testing.assert_array_equal(label[0, 16:], 255)
    np.testing.assert_array_equal(label[1, :, 24:], 255)


def test_base_scale_halves_eval_images(records):
    dataset = pipeline.build_dataset(records[0], num_classes=NUM_CLASSES, training=False,
                                     base_scale=0.5)
    shapes = [image.shape for image, _ in _take(dataset, 2)]
    assert shapes == [(1, 8, 14, 3), (1, 10, 12, 3)]


def test_pipeline_error_names_record_with_label_out_of_range(make_records, random_pair):
    image, label = random_pair(0, 16, 16, NUM_CLASSES)
    label[5, 5] = NUM_CLASSES
    path = make_records([(image, label, "pipeline_bad")])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pipeline_bad.*\[4\]"):
        _take(_train(path, batch_size=1, check_files="framing"), 1)


def _two_shards(make_records, random_pair, last_label_value=None):
    """Shards ``a`` (2 records) and ``b`` (3 records); optionally a bad last label."""
    pairs = [(*random_pair(i, 12, 14, NUM_CLASSES), f"rec{i}") for i in range(5)]
    if last_label_value is not None:
        pairs[-1][1][11, 13] = last_label_value
    first = make_records(pairs[:2], "shard-a.tfrecord")
    second = make_records(pairs[2:], "shard-b.tfrecord")
    return [first, second]


def test_bad_label_in_last_record_of_last_shard_fails_build_dataset(make_records,
                                                                    random_pair):
    paths = _two_shards(make_records, random_pair, last_label_value=NUM_CLASSES + 3)
    pattern = paths[0].replace("shard-a", "shard-*")
    for training in (True, False):
        with pytest.raises(tfrecord.RecordError,
                           match=r"shard-b\.tfrecord record 2 \('rec4'\).*\[7\]"):
            _train(pattern, training=training)


def test_bit_flipped_payload_fails_build_dataset_naming_the_file(make_records,
                                                                random_pair):
    paths = _two_shards(make_records, random_pair)
    data = bytearray(open(paths[1], "rb").read())
    data[40] ^= 0x10  # inside record 0's payload: framing intact, checksum wrong
    open(paths[1], "wb").write(bytes(data))
    _train(paths, check_files="framing")  # the framing check cannot see it
    with pytest.raises(tfrecord.RecordError,
                       match=r"shard-b\.tfrecord is truncated or corrupt at record 0"):
        _train(paths)


@pytest.fixture
def count_checks(monkeypatch):
    """Counts the records :func:`tfrecord.check_example` decodes, by filename."""
    checked = []
    original = tfrecord.check_example

    def counting(example, *args, **kwargs):
        checked.append(example.features.feature[tfrecord.IMAGE_FILENAME]
                       .bytes_list.value[0].decode())
        return original(example, *args, **kwargs)

    monkeypatch.setattr(tfrecord, "check_example", counting)
    return checked


def test_record_checks_are_cached_until_a_shard_changes(make_records, random_pair,
                                                        count_checks, tmp_path):
    paths = _two_shards(make_records, random_pair)
    cache = str(tmp_path / "cache")
    _train(paths, check_cache_dir=cache)
    assert sorted(count_checks) == [f"rec{i}" for i in range(5)]
    assert len(os.listdir(cache)) == 2  # one small file per shard
    count_checks.clear()
    _train(paths, check_cache_dir=cache)
    _train(paths, check_cache_dir=cache, training=False)
    assert count_checks == []
    stat = os.stat(paths[0])  # same bytes, newer mtime: checked again
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _train(paths, check_cache_dir=cache)
    assert sorted(count_checks) == ["rec0", "rec1"]
    count_checks.clear()
    make_records([(*random_pair(9, 12, 14, NUM_CLASSES), "new")], "shard-b.tfrecord")
    _train(paths, check_cache_dir=cache)
    assert count_checks == ["new"]
    count_checks.clear()
    _train(paths, check_cache_dir=cache, num_classes=NUM_CLASSES + 1)  # other check
    assert sorted(count_checks) == ["new", "rec0", "rec1"]


def test_failed_checks_are_not_cached(make_records, random_pair, count_checks, tmp_path):
    paths = _two_shards(make_records, random_pair, last_label_value=200)
    cache = str(tmp_path / "cache")
    for _ in range(2):
        with pytest.raises(tfrecord.RecordError, match="rec4"):
            _train(paths, check_cache_dir=cache)
    assert count_checks.count("rec4") == 2


def test_unwritable_cache_dir_does_not_fail_build_dataset(make_records, random_pair,
                                                          count_checks, tmp_path):
    paths = _two_shards(make_records, random_pair)
    (tmp_path / "a_file").write_text("not a folder")
    cache = str(tmp_path / "a_file" / "cache")  # unwritable, even for root
    for _ in range(2):
        image, _ = _take(_train(paths, check_cache_dir=cache), 1)[0]
        assert image.shape == (2, 12, 14, 3)
    assert len(count_checks) == 10  # nothing cached: both builds checked everything


def test_default_record_check_cache_is_under_nasseg_cache_dir(make_records, random_pair,
                                                              tmp_path, monkeypatch):
    monkeypatch.setenv("NASSEG_CACHE_DIR", str(tmp_path / "nasseg"))
    _train(_two_shards(make_records, random_pair))
    assert len(os.listdir(tmp_path / "nasseg" / "record_checks")) == 2


def test_check_files_accepts_booleans_and_rejects_unknown_modes(records, count_checks):
    _train(records[0], check_files=False)
    assert count_checks == []
    _train(records[0], check_files=True)
    assert len(count_checks) == 6
    with pytest.raises(ValueError, match="check_files must be one of records, framing"):
        _train(records[0], check_files="crc")


def test_pipeline_error_names_truncated_file(records):
    data = open(records[0], "rb").read()
    with open(records[0], "wb") as handle:
        handle.write(data[:-50])
    with pytest.raises(tfrecord.RecordError, match="data.tfrecord is truncated"):
        _train(records[0])


def test_missing_files_and_bad_arguments_are_reported(records, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        pipeline.build_dataset(str(tmp_path / "nope*"), num_classes=3, training=False)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.build_dataset(records[0], num_classes=3, training=True, crop_size=(8, 8))
    with pytest.raises(ValueError, match="crop_size"):
        pipeline.build_dataset(records[0], num_classes=3, training=True, batch_size=2)
    with pytest.raises(ValueError, match="ignore_label 2 is a class index"):
        pipeline.build_dataset(records[0], num_classes=3, training=False, ignore_label=2)


def test_input_pipelines_read_disjoint_shares_of_the_records(records):
    def first_pixels(pipeline_id):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id)
        dataset = pipeline.build_dataset(records[0], num_classes=NUM_CLASSES, training=False,
                                         input_context=context)
        return [image[0, 0, 0].tolist() for image, _ in _take(dataset, 10)]

    first, second = first_pixels(0), first_pixels(1)
    assert len(first) == len(second) == 3
    every = [pair[0][0, 0].astype(np.float32).tolist() for pair in records[1]]
    assert sorted(first + second) == sorted(every)


def test_start_batch_resumes_the_stream_exactly(tmp_path):
    from nasseg_tf.data import build_dataset, ensure_demo_dataset
    patterns = ensure_demo_dataset(str(tmp_path), num_train=6, num_val=2, height=32,
                                   width=32)
    kwargs = dict(num_classes=8, training=True, batch_size=2, crop_size=(24, 24), seed=3,
                  shuffle_buffer=4)
    full = [b for b, _ in zip(build_dataset(patterns["train"], **kwargs), range(7))]
    resumed = [b for b, _ in zip(build_dataset(patterns["train"], start_batch=4, **kwargs),
                                 range(3))]
    for (image_a, label_a), (image_b, label_b) in zip(full[4:], resumed):
        np.testing.assert_array_equal(image_a.numpy(), image_b.numpy())
        np.testing.assert_array_equal(label_a.numpy(), label_b.numpy())


def test_subsets_split_the_records_into_fixed_disjoint_halves(tmp_path):
    from nasseg_tf.data import build_dataset, ensure_demo_dataset
    patterns = ensure_demo_dataset(str(tmp_path), num_train=6, num_val=2, height=32,
                                   width=32)

    def images(subset):
        ds = build_dataset(patterns["train"], num_classes=8, training=False,
                           subset=subset)
        return {np.asarray(im).tobytes() for im, _ in ds}

    half_a, half_b, everything = images((2, 0)), images((2, 1)), images(None)
    assert half_a and half_b and not half_a & half_b
    assert half_a | half_b == everything
