"""``nasseg-import-checkpoint`` as users run it: import, serve, fine-tune; bad input."""

import os

import numpy as np
import pytest

import official_graph as og
from layer_checks import REPO
from nasseg_tf.data import ensure_demo_dataset
from console import run_console

pytestmark = pytest.mark.e2e



_run = run_console


def _checkpoint(folder, num_classes, model="mobilenetv2_dpc"):
    tensors = og.random_weights(og.deeplab_table(model, num_classes), seed=1)
    return og.write_checkpoint(os.path.join(folder, "model.ckpt-30000"), tensors)


def _one_error_line(run, tool="nasseg-import-checkpoint"):
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    lines = [l for l in run.stderr.splitlines() if l.startswith(f"{tool}: error:")]
    assert len(lines) == 1, run.stderr[-3000:]
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    wrong_classes = _checkpoint(str(tmp_path / "c21"), 21)
    base = ["--model=mobilenetv2_dpc", "--num_classes=19", "--output=out.keras",
            "--model_dir=run", "--dataset=cityscapes"]
    line = _one_error_line(_run("nasseg-import-checkpoint", tmp_path,
                                f"--checkpoint={wrong_classes}", *base))
    assert "21" in line and "--skip_logits" in line
    line = _one_error_line(_run("nasseg-import-checkpoint", tmp_path,
                                f"--checkpoint={tmp_path / 'nope'}", *base))
    assert "no checkpoint" in line and "nope" in line
    truncated = _checkpoint(str(tmp_path / "c19"), 19)
    data = truncated + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 3)
    line = _one_error_line(_run("nasseg-import-checkpoint", tmp_path,
                                f"--checkpoint={truncated}", *base))
    assert "cannot read" in line
    assert not (tmp_path / "out.keras").exists() and not (tmp_path / "run").exists()
    assert not [n for n in os.listdir(tmp_path) if ".tmp~" in n]


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_import_then_export_and_fine_tune_with_the_logits_excluded(tmp_path):
    prefix = _checkpoint(str(tmp_path / "official"), 19)
    run = _run("nasseg-import-checkpoint", tmp_path, "--model=mobilenetv2_dpc",
               f"--checkpoint={prefix}", "--num_classes=19", "--output=imported.keras",
               "--model_dir=imported", "--dataset=cityscapes", "--export_dir=export")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "weights from" in run.stdout

    # The export serves what the imported Keras model computes.
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    import nasseg_tf.layers  # noqa: F401  (registers the layers)

    model = keras.saving.load_model(str(tmp_path / "imported.keras"), compile=False)
    image = np.random.default_rng(0).integers(0, 256, (1, 49, 65, 3)).astype("uint8")
    expected = tf.nn.softmax(model(image.astype("float32"), training=False)).numpy()
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"](
        images=tf.constant(image))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)

    # Fine-tune 3 steps on the demo data (8 classes): the logits are left out.
    data = str(tmp_path / "demo")
    ensure_demo_dataset(data, num_train=8, num_val=2, height=40, width=40, seed=0)
    run = _run("nasseg-train", tmp_path, f"--gin_file={REPO}/gin/test/tiny.gin",
               "--model_dir=finetune",
               f"--gin_bindings=Data.data_dir = '{data}'",
               "--gin_bindings=Model.name = 'mobilenetv2_dpc'",
               "--gin_bindings=Model.overrides = {'bn_momentum': 0.9}",
               "--gin_bindings=Training.steps = 3", "--gin_bindings=Training.eval_every = 0",
               f"--gin_bindings=Training.init_checkpoint = '{tmp_path / 'imported'}'",
               "--gin_bindings=Training.init_exclude = ['logits/.*']")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "warm start:" in run.stdout and "(checkpoint); 2 excluded" in run.stdout
    assert "done at step 3" in run.stdout
