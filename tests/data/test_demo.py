"""Tests for nasseg_tf.data.demo."""

import json
import os

import numpy as np
import pytest

from nasseg_tf.data import datasets
from nasseg_tf.data import demo
from nasseg_tf.data import pipeline
from nasseg_tf.data import tfrecord

ndimage = pytest.importorskip("scipy.ndimage")


@pytest.fixture(scope="module")
def scenes():
    return [demo.generate_demo_example(seed, 96, 96) for seed in range(60)]


def test_same_seed_gives_same_scene_and_other_seeds_differ():
    image, label = demo.generate_demo_example(5, 64, 80)
    again_image, again_label = demo.generate_demo_example(5, 64, 80)
    other_image, _ = demo.generate_demo_example(6, 64, 80)
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    assert label.shape == (64, 80) and label.dtype == np.uint8
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    assert not np.array_equal(image, other_image)


def test_scenes_contain_several_classes_and_all_classes_appear(scenes):
    num_classes = datasets.get_dataset_info("demo").num_classes
    per_scene = [len(np.unique(label)) for _, label in scenes]
    assert min(per_scene) >= 4 and np.median(per_scene) >= 6
    everything = np.concatenate([label.ravel() for _, label in scenes])
    assert set(np.unique(everything)) == set(range(num_classes))


@pytest.mark.parametrize("cls", [demo.CAR, demo.PERSON, demo.VEGETATION])
def test_objects_appear_at_many_scales(scenes, cls):
    heights = []
    for _, label in scenes:
        components, count = ndimage.label(label == cls)
        for box in ndimage.find_objects(components):
            heights.append(box[0].stop - box[0].start)
    heights = np.array(heights)
    assert len(heights) >= 30
    assert np.percentile(heights, 90) >= 4 * max(np.percentile(heights, 10), 1)


def _colour_bins(image):
    q = image.astype(np.int64) // 16
    return (q[..., 0] * 16 + q[..., 1]) * 16 + q[..., 2]


def test_per_pixel_colour_classifier_does_not_solve_the_task(scenes):
    """The best colour -> class lookup fitted on 40 scenes is poor on 20 others."""
    counts = np.zeros((4096, 8))
    for image, label in scenes[:40]:
        np.add.at(counts, (_colour_bins(image).ravel(), label.ravel()), 1)
    lookup = counts.argmax(axis=1)
    correct = total = 0
    for image, label in scenes[40:]:
        correct += (lookup[_colour_bins(image)] == label).sum()
        total += label.size
    assert correct / total < 0.55


def test_ensure_demo_dataset_writes_once_then_reuses(tmp_path):
    patterns = demo.ensure_demo_dataset(str(tmp_path), num_train=6, num_val=3, height=32,
                                        width=40)
    counts = {split: sum(tfrecord.validate_records(p, num_classes=8).values())
              for split, p in patterns.items()}
    assert counts == {"train": 6, "val": 3}
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".tfrecord"))
    mtimes = [os.path.getmtime(tmp_path / f) for f in files]
    again = demo.ensure_demo_dataset(str(tmp_path), num_train=6, num_val=3, height=32,
                                     width=40)
    assert again == patterns
    assert [os.path.getmtime(tmp_path / f) for f in files] == mtimes
    manifest = json.loads((tmp_path / demo.MANIFEST_NAME).read_text())
    assert manifest["config"]["num_train"] == 6
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_changed_config_regenerates_and_drops_stale_shards(tmp_path):
    demo.ensure_demo_dataset(str(tmp_path), num_train=4, num_val=2, height=32, width=32,
                             num_shards=3)
    patterns = demo.ensure_demo_dataset(str(tmp_path), num_train=5, num_val=2, height=32,
                                        width=32, num_shards=1)
    shards = sorted(f for f in os.listdir(tmp_path) if f.endswith(".tfrecord"))
    assert shards == ["train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    assert tfrecord.check_tfrecord_files(patterns["train"]) == {
        str(tmp_path / shards[0]): 5}


def test_deleted_shard_triggers_regeneration(tmp_path):
    patterns = demo.ensure_demo_dataset(str(tmp_path), num_train=2, num_val=1, height=32,
                                        width=32, num_shards=1)
    os.remove(tmp_path / "val-00000-of-00001.tfrecord")
    demo.ensure_demo_dataset(str(tmp_path), num_train=2, num_val=1, height=32, width=32,
                             num_shards=1)
    assert tfrecord.check_tfrecord_files(patterns["val"])


def test_demo_records_are_reproducible_across_directories(tmp_path):
    first = demo.ensure_demo_dataset(str(tmp_path / "a"), num_train=3, num_val=1,
                                     height=32, width=32, num_shards=1, seed=11)
    second = demo.ensure_demo_dataset(str(tmp_path / "b"), num_train=3, num_val=1,
                                      height=32, width=32, num_shards=1, seed=11)
    read = lambda pattern: open(tfrecord.resolve_files(pattern)[0], "rb").read()  # noqa: E731
    assert read(first["train"]) == read(second["train"])


def test_demo_dataset_feeds_the_training_pipeline(tmp_path):
    patterns = demo.ensure_demo_dataset(str(tmp_path), num_train=4, num_val=2, height=48,
                                        width=48, num_shards=2)
    train = pipeline.build_dataset(patterns["train"], num_classes=8, training=True,
                                   batch_size=2, crop_size=(32, 32), seed=0)
    image, label = next(iter(train))
    assert image.shape == (2, 32, 32, 3) and label.shape == (2, 32, 32)
    val = pipeline.build_dataset(patterns["val"], num_classes=8, training=False)
    assert [tuple(x.shape) for x, _ in val] == [(1, 48, 48, 3)] * 2
