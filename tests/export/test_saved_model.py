"""SavedModel export: signatures, any input size, encoded images, equal outputs, input
limits, staging folders."""

import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf import zoo
from nasseg_tf.data import get_dataset_info
from nasseg_tf.export import (DEFAULT_MAX_PIXELS, dataset_metadata, export_saved_model,
                              export_version, load_metadata, load_serving,
                              next_version, resolve_export, serving_input_error,
                              versions)
from nasseg_tf.fileio import temp_path

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


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


# --------------------------------------------------------------------------------------
# Input limits. A 1x1 convolution stands in for a zoo model: the checks come before it.


def _tiny_model():
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1)])


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("limited") / "model")
    export_saved_model(_tiny_model(), path, metadata={"dataset": "demo"},
                       max_pixels=32 * 48)
    return load_serving(path).signatures, path


def _refusal(call):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        call()
    return serving_input_error(raised.value)


def _images(n, height, width):
    return tf.zeros([n, height, width, 3], tf.uint8)


def test_an_image_at_the_limit_is_served(limited):
    signatures, _ = limited
    out = signatures["serving_default"](images=_images(2, 32, 48))
    assert tuple(out["semantic"].shape) == (2, 32, 48)
    assert tuple(out["probabilities"].shape) == (2, 32, 48, 2)


def test_an_image_over_the_limit_is_refused_with_its_size(limited):
    signatures, _ = limited
    message = _refusal(lambda: signatures["serving_default"](images=_images(1, 33, 48)))
    assert message == ("image of 33x48 = 1584 pixels exceeds max_pixels=1536 of this "
                       "model (set at export)")
    encoded = tf.constant([tf.io.encode_png(_images(1, 40, 40)[0]).numpy()])
    message = _refusal(lambda: signatures["serve_encoded"](encoded=encoded))
    assert message.startswith("image of 40x40 = 1600 pixels exceeds max_pixels=1536")


def test_an_empty_batch_is_refused_by_both_signatures(limited):
    signatures, _ = limited
    expected = "empty batch: give at least one image"
    assert _refusal(lambda: signatures["serving_default"](images=_images(0, 8, 8))) \
        == expected
    assert _refusal(lambda: signatures["serve_encoded"](
        encoded=tf.constant([], tf.string))) == expected


@pytest.mark.parametrize("size", [(0, 0), (0, 5), (5, 0)])
def test_an_empty_image_is_refused(limited, size):
    signatures, _ = limited
    message = _refusal(lambda: signatures["serving_default"](images=_images(1, *size)))
    assert message == f"empty image of {size[0]}x{size[1]} pixels"


def test_other_errors_are_not_taken_for_input_checks(limited):
    signatures, _ = limited
    assert _refusal(lambda: signatures["serve_encoded"](
        encoded=tf.constant([b"not an image"]))) is None


def test_metadata_records_the_limit_beside_the_callers_fields(limited):
    _, path = limited
    meta = load_metadata(path)
    assert meta["dataset"] == "demo" and meta["max_pixels"] == 32 * 48
    assert meta["input"] == {"name": "images", "dtype": "uint8",
                             "shape": [None, None, None, 3], "encoded_name": "encoded"}
    assert meta["outputs"] == ["semantic", "probabilities"]
    assert meta["export_format"] == "saved_model"
    assert (meta["format"], meta["version"]) == ("nasseg_tf.export", 1)


def test_classes_are_always_written_generic_without_a_dataset(tmp_path):
    export_saved_model(_tiny_model(), str(tmp_path / "m"))
    meta = load_metadata(str(tmp_path / "m"))
    assert meta["class_names"] == ["class_0", "class_1"] and meta["num_classes"] == 2
    assert meta["generic_classes"] is True and len(meta["palette"]) == 2
    info = get_dataset_info("demo")
    path = str(tmp_path / "demo")
    export_saved_model(keras.Sequential([keras.Input((None, None, 3)),
                                         keras.layers.Conv2D(info.num_classes, 1)]),
                       path, metadata=dataset_metadata(info, "tiny"))
    meta = load_metadata(path)
    assert meta["class_names"] == list(info.class_names)
    assert meta["palette"] == [list(c) for c in info.palette]
    assert meta["generic_classes"] is False and meta["model"] == "tiny"
    with pytest.raises(ValueError, match="8 classes but the model outputs 2"):
        export_saved_model(_tiny_model(), str(tmp_path / "x"),
                           metadata=dataset_metadata(info))


def test_default_limit_is_recorded_and_zero_means_no_limit(tmp_path):
    export_saved_model(_tiny_model(), str(tmp_path / "default"))
    assert load_metadata(str(tmp_path / "default"))["max_pixels"] == DEFAULT_MAX_PIXELS
    path = str(tmp_path / "unlimited")
    export_saved_model(_tiny_model(), path, max_pixels=0)
    assert load_metadata(path)["max_pixels"] is None
    big = load_serving(path).signatures["serving_default"](images=_images(1, 8, 600))
    assert tuple(big["semantic"].shape) == (1, 8, 600)


@pytest.mark.parametrize("bad", [-1, 1.5, "4096", True])
def test_a_bad_limit_is_refused_before_exporting(tmp_path, bad):
    with pytest.raises(ValueError, match="max_pixels must be a number of pixels"):
        export_saved_model(_tiny_model(), str(tmp_path / "model"), max_pixels=bad)
    assert not os.listdir(tmp_path)


def test_export_removes_staging_folders_of_killed_exports(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = temp_path(str(tmp_path / "model"), pid=dead.pid)
    os.makedirs(os.path.join(stale, "variables"))
    live = temp_path(str(tmp_path / "other"))  # this process's: an export under way
    os.makedirs(live)
    legacy = str(tmp_path / ".export-k2j4_x9a")  # before the naming: by age only
    os.makedirs(legacy)
    os.utime(legacy, (time.time() - 2 * 86400,) * 2)
    export_saved_model(_tiny_model(), str(tmp_path / "model"))
    assert sorted(os.listdir(tmp_path)) == sorted(["model", os.path.basename(live)])


def test_probabilities_can_be_left_out(tmp_path):
    path = str(tmp_path / "labels_only")
    export_saved_model(_tiny_model(), path, probabilities=False)
    out = load_serving(path).signatures["serving_default"](images=_images(1, 4, 5))
    assert set(out) == {"semantic"} and tuple(out["semantic"].shape) == (1, 4, 5)
    assert load_metadata(path)["outputs"] == ["semantic"]


# --------------------------------------------------------------------------------------
# TF Serving version folders, local and on a remote file system (ram:// for gs://).


@pytest.mark.parametrize("root", ["local", "ram"])
def test_versions_count_up_and_readers_take_the_newest(tmp_path, root):
    base = (str(tmp_path / "serving") if root == "local"
            else f"ram://versions_{os.getpid()}/serving")
    assert next_version(base) == 1 and versions(base) == []
    first = export_version(_tiny_model(), base, metadata={"note": "first"})
    second = export_version(_tiny_model(), base, metadata={"note": "second"})
    assert (first, second) == (os.path.join(base, "1"), os.path.join(base, "2"))
    tf.io.gfile.makedirs(os.path.join(base, "notes"))  # not a version: ignored
    seventh = export_version(_tiny_model(), base, version=7, metadata={"note": "7"})
    assert versions(base) == [1, 2, 7] and next_version(base) == 8
    assert resolve_export(base) == seventh == os.path.join(base, "7")
    assert load_metadata(base)["note"] == "7"
    assert load_metadata(first)["note"] == "first"
    out = load_serving(base).signatures["serving_default"](images=_images(1, 3, 3))
    assert tuple(out["semantic"].shape) == (1, 3, 3)
    assert sorted(tf.io.gfile.listdir(base)) == ["1", "2", "7", "notes"]  # no staging
    with pytest.raises(FileExistsError):
        export_version(_tiny_model(), base, version=2)
    with pytest.raises(ValueError, match="positive integer"):
        export_version(_tiny_model(), base, version=0)
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        resolve_export(os.path.join(base, "notes"))


# --------------------------------------------------------------------------------------
# The REST request of the README, checked against the signatures (no server here):
# TF Serving's JSON "instances" become the batch of the named signature input.

REST_DEFAULT = """{"signature_name": "serving_default",
 "instances": [[[[0, 0, 0], [255, 255, 255]], [[12, 34, 56], [200, 100, 50]]]]}"""


def test_rest_request_bodies_of_the_readme_fit_the_signatures(exported, tmp_path):
    import base64  # pylint: disable=import-outside-toplevel
    import json  # pylint: disable=import-outside-toplevel

    _, loaded, _ = exported
    body = json.loads(REST_DEFAULT)
    images = tf.constant(body["instances"], tf.uint8)  # [1, 2, 2, 3]
    out = loaded.signatures[body["signature_name"]](images=images)
    assert tuple(out["semantic"].shape) == (1, 2, 2)

    png = tf.io.encode_png(np.full((5, 6, 3), 90, np.uint8)).numpy()
    encoded_body = json.loads(json.dumps({
        "signature_name": "serve_encoded",
        "instances": [{"b64": base64.b64encode(png).decode("ascii")}]}))
    # TF Serving decodes {"b64": ...} into the bytes of a string tensor element.
    encoded = tf.constant([base64.b64decode(i["b64"]) for i in encoded_body["instances"]])
    out = loaded.signatures[encoded_body["signature_name"]](encoded=encoded)
    assert tuple(out["semantic"].shape) == (1, 5, 6)
    assert tuple(out["probabilities"].shape) == (1, 5, 6, 4)
    signature = loaded.signatures["serve_encoded"].structured_input_signature[1]
    assert signature["encoded"].dtype == tf.string
