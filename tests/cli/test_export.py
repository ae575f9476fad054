"""``nasseg-export`` as a user runs it (console script, fresh process, another folder):
version folders, class metadata that ``nasseg-predict`` reads, a run's checkpoints or
model.keras, TFLite with int8 calibration from the run's TFRecords, bad flags."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from nasseg_tf.data import get_dataset_info
from nasseg_tf.export import load_metadata

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)


def _tool(name, cwd, *args, expect=0):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    result = subprocess.run([os.path.join(BIN, name), *args], cwd=str(cwd),
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == expect, result.stdout + result.stderr[-3000:]
    return result


def _conv_model(path, classes):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(classes, 1)],
                             name="tiny")
    model.save(str(path))
    return model


def test_keras_model_export_names_the_classes_and_predict_needs_no_dataset(tmp_path):
    info = get_dataset_info("demo")
    _conv_model(tmp_path / "tiny.keras", info.num_classes)
    _tool("nasseg-export", tmp_path, "--keras_model=tiny.keras", "--export_dir=serving",
          "--dataset=demo", "--max_pixels=1000")
    assert sorted(os.listdir(tmp_path / "serving")) == ["1"]  # TF Serving version 1
    meta = load_metadata(str(tmp_path / "serving"))
    assert meta["max_pixels"] == 1000 and meta["class_names"] == list(info.class_names)
    assert meta["source"]["kind"] == "keras_model" and meta["model"] == "tiny"
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype("uint8")
    Image.fromarray(image).save(tmp_path / "street.png")
    _tool("nasseg-predict", tmp_path, "--saved_model=serving", "--images=street.png",
          "--output_dir=out")
    colours = {tuple(c) for c in np.asarray(Image.open(tmp_path / "out" /
                                                       "street_label.png")).reshape(-1, 3)}
    assert colours <= set(info.palette)


_DEFAULTS = dict(model_dir=None, checkpoint=None, keras_model=None, model=None,
                 num_classes=19, dataset=None, version=None, overwrite=True,
                 format="saved_model", probabilities=True, max_pixels=0,
                 input_size="513,513", quantization="float32",
                 representative_pattern=None, num_representative=8)


@pytest.mark.parametrize("flags, message", [
    (dict(model="autodeeplab_s", keras_model="x.keras"), "exactly one of --model_dir"),
    (dict(model_dir="run", dataset="demo"), "--dataset goes with --keras_model"),
    (dict(model="autodeeplab_s", checkpoint="ckpt-1"), "--checkpoint goes with"),
    (dict(model="autodeeplab_s", format="tflite", input_size="big"), "--input_size"),
    (dict(model="autodeeplab_s", quantization="int8"), "--quantization goes with"),
    (dict(model="autodeeplab_s", format="tflite", version=2), "--version goes with"),
    (dict(model="autodeeplab_s", format="tflite", representative_pattern="x*"),
     "--representative_pattern goes with --quantization=int8"),
    (dict(model_dir="no_such_run"), "a training run?"),
])
def test_bad_flag_combinations_are_refused_before_any_work(tmp_path, flags, message):
    from nasseg_tf.cli import export as export_cli  # pylint: disable=import-outside-toplevel

    with pytest.raises((ValueError, OSError), match=message.replace("?", r"\?")):
        export_cli.export(**dict(_DEFAULTS, export_dir=str(tmp_path / "serving"), **flags))
    assert not os.path.exists(tmp_path / "serving")


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_a_bad_flag_is_one_line_exit_2_and_writes_nothing(tmp_path):
    result = _tool("nasseg-export", tmp_path, "--model_dir=run", "--dataset=demo",
                   "--export_dir=serving", expect=2)
    assert result.stderr.strip() == ("nasseg-export: error: --dataset goes with "
                                     "--keras_model or --model (a run names its own "
                                     "dataset)")
    assert not os.path.exists(tmp_path / "serving")


@pytest.mark.slow  # trains a tiny run and converts it three ways
def test_run_export_checkpoints_model_keras_and_tflite(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    _tool("nasseg-train", tmp_path, "--gin_file=test/tiny.gin", "--model_dir=run",
          "--gin_bindings=Training.steps = 4", "--gin_bindings=Training.eval_every = 0")
    first = sorted(p[:-len(".index")] for p in os.listdir(tmp_path / "run" / "checkpoints")
                   if p.endswith(".index"))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _tool("nasseg-export", elsewhere, f"--model_dir={tmp_path / 'run'}",
          "--export_dir=serving")
    _tool("nasseg-export", elsewhere, f"--model_dir={tmp_path / 'run'}",
          f"--checkpoint={tmp_path / 'run' / 'checkpoints' / first}",
          "--export_dir=serving", "--noprobabilities")
    latest, older = (load_metadata(str(elsewhere / "serving" / v)) for v in ("1", "2"))
    assert latest["source"]["step"] == 4 and latest["source"]["kind"] == "checkpoint"
    assert older["source"]["path"].endswith(first) and older["outputs"] == ["semantic"]
    assert latest["class_names"] == list(get_dataset_info("demo").class_names)
    assert latest["dataset"] == "demo" and latest["generic_classes"] is False

    # The export computes the run's model at its latest checkpoint.
    import gin_runs  # pylint: disable=import-outside-toplevel

    model, _, step = gin_runs.restore(str(tmp_path / "run"))
    image = np.random.default_rng(1).integers(0, 256, (1, 37, 41, 3)).astype("uint8")
    served = tf.saved_model.load(str(elsewhere / "serving" / "1")).signatures[
        "serving_default"](images=tf.constant(image))["probabilities"].numpy()
    expected = tf.nn.softmax(model(image.astype("float32"), training=False)).numpy()
    assert step == 4 and np.abs(served - expected).max() <= 1e-4

    # int8 TFLite calibrated on the run's own training TFRecords.
    _tool("nasseg-export", elsewhere, f"--model_dir={tmp_path / 'run'}", "--format=tflite",
          "--quantization=int8", "--input_size=33,33", "--num_representative=4",
          "--export_dir=int8")
    meta = load_metadata(str(elsewhere / "int8"))
    assert meta["quantization"] == "int8" and meta["input"]["shape"] == [1, 33, 33, 3]
    assert meta["representative"]["num_images"] == 4
    assert "demo_data" in meta["representative"]["pattern"]
    from nasseg_tf.export import tflite  # pylint: disable=import-outside-toplevel

    out = tflite.run(tflite.make_interpreter(str(elsewhere / "int8" / "model.tflite")),
                     image[0, :33, :33])
    assert out["semantic"].shape == (1, 33, 33) and np.isfinite(out["probabilities"]).all()

    # Without checkpoints the run's model.keras is exported.
    for name in os.listdir(tmp_path / "run" / "checkpoints"):
        os.remove(tmp_path / "run" / "checkpoints" / name)
    _tool("nasseg-export", elsewhere, f"--model_dir={tmp_path / 'run'}",
          "--export_dir=serving")
    assert load_metadata(str(elsewhere / "serving"))["source"]["kind"] == "keras_model"
    assert sorted(os.listdir(elsewhere / "serving")) == ["1", "2", "3"]
