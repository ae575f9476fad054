"""Tests for nasseg_tf.train.evaluation: inference variants, evaluate, result files."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from PIL import Image

from layer_checks import mirrored_strategy
from nasseg_tf.data import build_dataset
from nasseg_tf.data import ensure_demo_dataset
from nasseg_tf.data import get_dataset_info
from nasseg_tf.models import zoo
from nasseg_tf.train import evaluation

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

NUM_CLASSES = 4
CODE = 40.0  # the "perfect" test images store label * CODE in the red channel


class DecodeLabel(keras.layers.Layer):
    """A perfect predictor: one-hot logits of the label stored in the red channel."""

    def call(self, images):
        label = ops.cast(ops.round(images[..., 0] / CODE), "int32")
        return 10.0 * ops.one_hot(label, NUM_CLASSES)


def _model(*layers):
    return keras.Sequential([keras.Input((None, None, 3)), *layers])


def _random_images(seed, shape):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


@pytest.fixture(scope="module")
def pointwise_model():
    """A per-pixel 1x1 conv: its logits commute with flips."""
    keras.utils.set_random_seed(0)
    return _model(keras.layers.Conv2D(NUM_CLASSES, 1, kernel_initializer="he_normal"))


def test_probabilities_have_input_size_and_sum_to_one(pointwise_model):
    images = _random_images(0, (2, 13, 10, 3))
    probabilities = evaluation.predict_logits(pointwise_model, images,
                                              scales=(0.5, 1.5), flip=True).numpy()
    assert probabilities.shape == (2, 13, 10, NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_flip_with_flip_equivariant_model_equals_no_flip(pointwise_model):
    images = _random_images(1, (2, 9, 14, 3))
    plain = evaluation.predict_logits(pointwise_model, images).numpy()
    flipped = evaluation.predict_logits(pointwise_model, images, flip=True).numpy()
    np.testing.assert_allclose(flipped, plain, atol=1e-6)
    expected = tf.nn.softmax(pointwise_model(images)).numpy()
    np.testing.assert_allclose(plain, expected, atol=1e-6)


def test_flip_averaging_makes_any_model_flip_equivariant():
    keras.utils.set_random_seed(1)
    model = _model(keras.layers.Conv2D(NUM_CLASSES, (1, 5), padding="same"))
    images = _random_images(2, (1, 6, 11, 3))
    mirror = images[:, :, ::-1]

    def predict(x, flip):
        return evaluation.predict_logits(model, x, flip=flip).numpy()

    assert np.abs(predict(mirror, False) - predict(images, False)[:, :, ::-1]).max() > 1e-3
    np.testing.assert_allclose(predict(mirror, True), predict(images, True)[:, :, ::-1],
                               atol=1e-6)


def test_predict_logits_reuses_one_trace_per_model_and_options(pointwise_model):
    predict = evaluation._predict_function(pointwise_model, (0.5, 1.0), True)
    for size in [(5, 6), (7, 9), (11, 4)]:
        evaluation.predict_logits(pointwise_model, _random_images(4, (1, *size, 3)),
                                  scales=[0.5, 1], flip=True)
    assert evaluation._predict_function(pointwise_model, (0.5, 1.0), True) is predict
    assert predict.experimental_get_tracing_count() <= 2  # then a shape-generic trace


def test_multi_scale_on_constant_image_equals_single_scale(pointwise_model):
    images = np.full((1, 17, 23, 3), 90.0, np.float32)
    single = evaluation.predict_logits(pointwise_model, images).numpy()
    multi = evaluation.predict_logits(pointwise_model, images,
                                      scales=(0.5, 0.75, 1.25, 2.0), flip=True).numpy()
    np.testing.assert_allclose(multi, single, atol=1e-6)


def test_scaled_size_rounds_and_stays_positive():
    size = tf.constant([17, 23])
    assert evaluation.scaled_size(size, 0.5).numpy().tolist() == [8, 12]  # half to even
    assert evaluation.scaled_size(size, 1.25).numpy().tolist() == [21, 29]
    assert evaluation.scaled_size(size, 0.01).numpy().tolist() == [1, 1]
    with pytest.raises(ValueError, match="positive"):
        evaluation.check_scales((1.0, 0.0))


def _coded_dataset(sizes, batch_size, seed=0):
    """Images of varying sizes whose red channel encodes the label; padded batches."""
    rng = np.random.default_rng(seed)
    pairs = []
    for height, width in sizes:
        label = rng.integers(0, NUM_CLASSES, (height, width)).astype(np.int32)
        label[rng.uniform(size=label.shape) < 0.1] = 255
        image = np.stack([np.where(label == 255, 0, label) * CODE,
                          rng.uniform(0, 255, label.shape),
                          rng.uniform(0, 255, label.shape)], -1).astype(np.float32)
        pairs.append((image, label))
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(pairs), output_signature=(
            tf.TensorSpec([None, None, 3], tf.float32),
            tf.TensorSpec([None, None], tf.int32)))
    dataset = dataset.padded_batch(batch_size, padding_values=(127.5, 255))
    counted = sum(int((label != 255).sum()) for _, label in pairs)
    return dataset, counted


def test_perfect_predictor_scores_miou_one_and_padding_is_not_counted():
    dataset, counted = _coded_dataset([(12, 16), (9, 20), (15, 7)], batch_size=2)
    results = evaluation.evaluate(_model(DecodeLabel()), dataset, NUM_CLASSES, flip=True,
                                  class_names=["a", "b", "c", "d"], progress=False)
    assert results["miou"] == 1.0 and results["pixel_accuracy"] == 1.0
    assert results["per_class_iou"] == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    assert results["num_pixels"] == counted
    assert results["num_images"] == 3
    assert results["scales"] == [1.0] and results["flip"] is True
    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == counted and matrix.sum() == np.trace(matrix)


def test_max_images_keeps_batches_and_cuts_the_last():
    dataset, _ = _coded_dataset([(6, 6)] * 5, batch_size=2)
    assert [len(images) for images, _ in evaluation.take_images(dataset, 3)] == [2, 1]
    results = evaluation.evaluate(_model(DecodeLabel()), dataset, NUM_CLASSES,
                                  max_images=3, progress=False)
    assert results["num_images"] == 3


def test_class_count_mismatch_raises_naming_both_numbers(pointwise_model):
    dataset, _ = _coded_dataset([(6, 6)], batch_size=1)
    with pytest.raises(ValueError, match="outputs 4 classes.*num_classes=5"):
        evaluation.evaluate(pointwise_model, dataset, 5, progress=False)
    with pytest.raises(ValueError, match="outputs 4 classes.*num_classes=5"):
        evaluation.evaluate(DecodeLabel(), dataset, 5, progress=False)  # no .outputs


@pytest.fixture(scope="module")
def demo_val(tmp_path_factory):
    patterns = ensure_demo_dataset(str(tmp_path_factory.mktemp("demo")), num_train=1,
                                   num_val=3, height=40, width=48)
    return patterns["val"]


def test_mirrored_zoo_evaluation_equals_single_device(demo_val):
    info = get_dataset_info("demo")
    with mirrored_strategy().scope():
        keras.utils.set_random_seed(2)
        model = zoo.build("autodeeplab_s", num_classes=info.num_classes,
                          filter_multiplier=4, aspp_filters=16, decoder_filters=16)
    # Batch size 1 over 2 replicas: one replica gets an empty batch every step.
    dataset = build_dataset(demo_val, num_classes=info.num_classes, training=False)
    kwargs = dict(num_classes=info.num_classes, class_names=info.class_names)
    single = evaluation.evaluate(model, dataset, progress=True, **kwargs)
    mirrored = evaluation.evaluate(model, dataset, progress=False,
                                   strategy=mirrored_strategy(), **kwargs)
    assert mirrored == single
    assert single["num_images"] == 3 and single["num_pixels"] == 3 * 40 * 48
    assert set(single["per_class_iou"]) == set(info.class_names)


def test_mirrored_multi_scale_flip_evaluation_equals_single_device():
    with mirrored_strategy().scope():
        keras.utils.set_random_seed(3)
        model = _model(keras.layers.Conv2D(8, 3, padding="same"),
                       keras.layers.BatchNormalization(), keras.layers.ReLU(),
                       keras.layers.Conv2D(NUM_CLASSES, 1))
    dataset, counted = _coded_dataset([(12, 16), (9, 20), (15, 7)], batch_size=2)
    kwargs = dict(num_classes=NUM_CLASSES, scales=(0.75, 1.25), flip=True,
                  progress=False)
    single = evaluation.evaluate(model, dataset, **kwargs)
    mirrored = evaluation.evaluate(model, dataset, strategy=mirrored_strategy(), **kwargs)
    assert mirrored == single
    assert single["num_images"] == 3 and single["num_pixels"] == counted


def test_results_json_is_written_atomically_and_loads(tmp_path):
    path = str(tmp_path / "eval" / "results.json")
    results = {"miou": np.float64(0.5), "num_images": np.int64(3), "flip": False,
               "scales": [0.5, 1.0], "per_class_iou": {"b": None, "a": np.float32(0.25)},
               "cm": np.eye(2, dtype=np.int64)}
    assert evaluation.write_results_json(results, path) == path
    with open(path) as handle:
        text = handle.read()
    loaded = json.loads(text)
    assert loaded == {"miou": 0.5, "num_images": 3, "flip": False, "scales": [0.5, 1.0],
                      "per_class_iou": {"a": 0.25, "b": None}, "cm": [[1, 0], [0, 1]]}
    assert text == json.dumps(loaded, sort_keys=True, indent=2) + "\n"
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        evaluation.write_results_json({"bad": object()}, path)
    assert json.loads(open(path).read()) == loaded  # the old file is untouched
    assert os.listdir(tmp_path / "eval") == ["results.json"]  # no temporary left over


def test_prediction_picture_has_three_panels(tmp_path):
    info = get_dataset_info("demo")
    image = _random_images(3, (20, 30, 3))
    label = np.random.default_rng(4).integers(0, info.num_classes, (20, 30))
    label[:2] = 255
    path = evaluation.save_prediction_pictures(image, label, label[::-1], info,
                                               str(tmp_path / "pictures" / "0.png"))
    with Image.open(path) as picture:
        assert picture.size == (3 * 30 + 2 * 4, 20) and picture.mode == "RGB"
    with pytest.raises(ValueError, match="prediction must be"):
        evaluation.save_prediction_pictures(image, label, label[:, :5], info, path)
