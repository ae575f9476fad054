"""Fixtures for the data tests: tiny images, labels and TFRecords written on the fly."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from nasseg_tf.data import datasets  # noqa: E402
from nasseg_tf.data import tfrecord  # noqa: E402


def _write(image: Image.Image, path, **kwargs) -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kwargs)
    return path


@pytest.fixture
def write_rgb():
    """``write_rgb(path, array)`` saves an RGB PNG or JPEG (by extension)."""
    def write(path, array):
        kwargs = {"quality": 95} if str(path).endswith((".jpg", ".jpeg")) else {}
        return _write(Image.fromarray(np.asarray(array, np.uint8), "RGB"), path, **kwargs)
    return write


@pytest.fixture
def write_label():
    """``write_label(path, array, palette=False)``: greyscale, or VOC palette PNG."""
    def write(path, array, palette=False):
        image = Image.fromarray(np.asarray(array, np.uint8))
        if palette:
            image = image.convert("P")
            colours = np.zeros((256, 3), np.uint8)
            colours[:21] = datasets.get_dataset_info("pascal_voc2012").palette_array()
            colours[255] = (224, 224, 192)
            image.putpalette(colours.ravel().tolist())
        return _write(image, path)
    return write


def _random_pair(seed, height, width, num_classes, ignore_fraction=0.1):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, (height, width), dtype=np.uint8)
    label[rng.uniform(size=(height, width)) < ignore_fraction] = 255
    return image, label


@pytest.fixture
def random_pair():
    """``random_pair(seed, h, w, num_classes)``: random image and label (some 255)."""
    return _random_pair


@pytest.fixture
def make_records(tmp_path):
    """``make_records(pairs, name="data.tfrecord")`` writes (image, label, filename)."""
    def make(pairs, name="data.tfrecord"):
        path = str(tmp_path / name)
        with tfrecord.tf.io.TFRecordWriter(path) as writer:
            for image, label, filename in pairs:
                example = tfrecord.make_example(
                    tfrecord.encode_png(image), tfrecord.encode_png(label), filename,
                    image.shape[0], image.shape[1])
                writer.write(example.SerializeToString())
        return path
    return make
