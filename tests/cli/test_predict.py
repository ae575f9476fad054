"""``nasseg-predict``: one output per input however the inputs are named, input limits."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from nasseg_tf.cli import predict
from nasseg_tf.data import get_dataset_info
from nasseg_tf.export import dataset_metadata, export_saved_model

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

TOOL = os.path.join(os.path.dirname(sys.executable), "nasseg-predict")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A 1x1-convolution export for the demo classes serving up to 48x48 pixels."""
    info = get_dataset_info("demo")
    model = keras.Sequential([keras.Input((None, None, 3)),
                              keras.layers.Conv2D(info.num_classes, 1)])
    path = str(tmp_path_factory.mktemp("predict") / "export")
    export_saved_model(model, path, metadata=dataset_metadata(info), max_pixels=48 * 48)
    return path


def _image(path, size=(32, 40)):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3)).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


def _run(cwd, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([TOOL, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def test_inputs_with_the_same_name_keep_their_folders_and_duplicates_count_once(
        tmp_path, saved_model):
    for folder in ["a", "b", "c/d", "e"]:
        _image(str(tmp_path / "photos" / folder / "img0.png"))
    result = _run(str(tmp_path), f"--saved_model={saved_model}",
                  "--images=photos/*/img0.png", "--images=photos/c/d/img0.png",
                  "--images=./photos/a/img0.png", "--output_dir=out")
    assert result.returncode == 0, result.stderr
    assert "wrote 8 files" in result.stdout
    assert _files(str(tmp_path / "out")) == sorted(
        os.path.join(folder, f"img0_{kind}.png")
        for folder in ["a", "b", os.path.join("c", "d"), "e"]
        for kind in ["label", "overlay"])


def test_an_image_over_the_models_limit_is_one_error_line_naming_it(tmp_path,
                                                                    saved_model):
    _image(str(tmp_path / "big.png"), size=(49, 48))
    result = _run(str(tmp_path), f"--saved_model={saved_model}", "--images=big.png",
                  "--output_dir=out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "nasseg-predict: error: cannot segment big.png: image of 49x48 = 2352 pixels "
        "exceeds max_pixels=2304 of this model (set at export)")
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_unique_file_names_give_flat_outputs():
    assert predict.output_names(["x/a.png", "y/b.jpg", "c.png"]) == ["a", "b", "c"]


def test_colliding_names_keep_folders_below_the_common_one(tmp_path):
    paths = [str(tmp_path / "p" / "a" / "img0.png"), str(tmp_path / "p" / "b" / "IMG0.jpg"),
             str(tmp_path / "p" / "b" / "z.png")]
    assert predict.output_names(paths) == [os.path.join("a", "img0"),
                                           os.path.join("b", "IMG0"),
                                           os.path.join("b", "z")]


def test_names_that_differ_only_by_extension_keep_it():
    assert predict.output_names(["s/img0.png", "s/img0.jpg"]) == ["img0.png", "img0.jpg"]


def test_a_file_named_twice_is_listed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _image("a.png")
    _image("b.png")
    assert predict._image_paths(["a.png", "*.png", "./a.png"]) == ["a.png", "b.png"]


def test_an_unreadable_input_stops_before_anything_is_written(tmp_path):
    good = _image(str(tmp_path / "good.png"))
    bad = str(tmp_path / "bad.png")
    with open(bad, "w", encoding="utf-8") as f:
        f.write("not a picture")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        predict.predict_files([good, bad], str(tmp_path / "out"), saved_model="unused")
    assert not os.path.exists(tmp_path / "out")


def test_an_output_that_would_replace_an_input_is_refused(tmp_path):
    source = _image(str(tmp_path / "x.png"))
    victim = _image(str(tmp_path / "x_label.png"))
    with pytest.raises(ValueError, match="would replace the input .*x_label.png"):
        predict.predict_files([source, victim], str(tmp_path), saved_model="unused")
