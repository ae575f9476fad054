"""SavedModel export: signatures, any input size, encoded images, equal outputs."""

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf import zoo
from nasseg_tf.export import export_saved_model, load_serving


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = zoo.build("autodeeplab_s", num_classes=4, filter_multiplier=4,
                      aspp_filters=16, decoder_filters=16)
    path = str(tmp_path_factory.mktemp("export") / "model")
    export_saved_model(model, path)
    return model, load_serving(path), path


@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_serving_default_matches_keras_at_any_size(exported, size):
    model, loaded, _ = exported
    images = np.random.default_rng(0).integers(0, 256, (2, *size, 3)).astype("uint8")
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    probs = tf.nn.softmax(model(images.astype("float32"), training=False)).numpy()
    assert out["semantic"].dtype == tf.int32
    assert tuple(out["semantic"].shape) == (2, *size)
    np.testing.assert_allclose(out["probabilities"].numpy(), probs, atol=1e-4)
    np.testing.assert_array_equal(out["semantic"].numpy(), probs.argmax(-1))


def test_encoded_signature_equals_raw_signature(exported):
    _, loaded, _ = exported
    images = np.random.default_rng(1).integers(0, 256, (2, 30, 41, 3)).astype("uint8")
    encoded = tf.constant([tf.io.encode_png(im).numpy() for im in images])
    raw = loaded.signatures["serving_default"](images=tf.constant(images))
    enc = loaded.signatures["serve_encoded"](encoded=encoded)
    np.testing.assert_allclose(enc["probabilities"].numpy(), raw["probabilities"].numpy(),
                               atol=1e-6)


def test_export_refuses_to_overwrite_when_asked(exported):
    model, _, path = exported
    with pytest.raises(FileExistsError):
        export_saved_model(model, path, overwrite=False)


def test_loading_a_missing_export_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        load_serving(str(tmp_path / "nothing_here"))


def test_dpc_model_with_pyramid_pooling_serves_any_size(tmp_path):
    # Pyramid pooling's kernel follows the feature size; in the SavedModel that size is
    # dynamic (box filter on cumulative sums), and must agree with the Keras model.
    cell = [{"op": "pyramid_pooling", "grid_size": [2, 1], "input": -1},
            {"kernel": 3, "rate": [1, 3], "op": "conv", "input": 0},
            {"op": "pyramid_pooling", "grid_size": [1, 1], "input": 1}]
    model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8, dpc_cell=cell)
    path = str(tmp_path / "dpc")
    export_saved_model(model, path)
    serving = load_serving(path).signatures["serving_default"]
    for size in [(65, 65), (97, 49)]:
        images = np.random.default_rng(2).integers(0, 256, (1, *size, 3)).astype("uint8")
        probs = tf.nn.softmax(model(images.astype("float32"), training=False)).numpy()
        out = serving(images=tf.constant(images))
        np.testing.assert_allclose(out["probabilities"].numpy(), probs, atol=1e-4)
