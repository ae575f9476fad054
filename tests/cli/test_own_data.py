"""The README walkthrough "Train on your own data", as a user runs it.

A folder of images and label PNGs with a class-names file and a palette file is
converted, trained on for two steps, evaluated, exported and used for predictions —
each step an installed console script in a fresh process started in the user's folder
(tmp_path), never the source tree. Then the run folder is moved elsewhere and still
evaluates and predicts from a third directory.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BIN = os.path.dirname(sys.executable)

CLASSES = ("sky", "road", "car")
PALETTE = ((70, 130, 180), (128, 64, 128), (0, 0, 142))

TINY_GIN = """
Model.name = 'autodeeplab_s'
Model.overrides = {'filter_multiplier': 4, 'aspp_filters': 8, 'decoder_filters': 8,
                   'aspp_rates': (1, 2, 3), 'path': (0, 0, 0, 1), 'bn_momentum': 0.9}
Data.dataset = 'data'
Training.steps = 2
Training.batch_size = 2
Training.crop_size = (32, 32)
Training.checkpoint_every = 2
Training.summary_every = 2
Training.shuffle_buffer = 8
Evaluation.num_pictures = 1
"""


def _tool(name, cwd, *args):
    """Runs an installed console script in a fresh process in ``cwd``."""
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.skip(f"console script {name} is not installed beside {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([path, *args], cwd=str(cwd), env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def _write_folder_dataset(root, rng):
    """``root/{train,val}/{images,labels}``: sky on top, road below, a car box."""
    for split, count in (("train", 6), ("val", 3)):
        for index in range(count):
            label = np.zeros((48, 48), np.uint8)
            label[24:] = 1
            top, left = rng.integers(14, 30), rng.integers(0, 30)
            label[top:top + 12, left:left + 16] = 2
            label[:2, :2] = 255  # unlabelled corner
            image = np.asarray(PALETTE, np.int32)[np.minimum(label, 2)]
            image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255)
            for kind, array in (("images", image.astype(np.uint8)), ("labels", label)):
                os.makedirs(root / split / kind, exist_ok=True)
                Image.fromarray(array).save(root / split / kind / f"{split}{index}.png")


def _last_json(stdout):
    """The JSON line ``nasseg-eval`` prints last (after its progress lines)."""
    return json.loads(stdout.strip().splitlines()[-1])


def _colours(path):
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_own_folder_converts_trains_evaluates_exports_predicts_and_moves(tmp_path):
    _write_folder_dataset(tmp_path / "photos", np.random.default_rng(0))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "palette.txt").write_text("".join(f"{r} {g} {b}\n" for r, g, b in PALETTE))
    (tmp_path / "tiny.gin").write_text(TINY_GIN)

    out = _tool("nasseg-build-data", tmp_path, "--dataset=generic", "--root=photos",
                "--class_names=classes.txt", "--palette=palette.txt",
                "--output_dir=data", "--num_shards=2")
    assert "train: 2 shards, 6 records in data" in out
    assert "dataset description: data/dataset.json (3 classes: sky, road, car)" in out
    description = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert description["class_names"] == list(CLASSES)
    train_pixels = description["splits"]["train"]["pixel_counts"]
    assert sum(train_pixels) + description["splits"]["train"]["ignored_pixels"] == (
        6 * 48 * 48)
    assert train_pixels[2] == 6 * 12 * 16  # the car boxes

    _tool("nasseg-train", tmp_path, "--gin_file=tiny.gin", "--model_dir=runs/mine")
    config = (tmp_path / "runs" / "mine" / "config.gin").read_text()
    described = str(tmp_path / "data" / "dataset.json")
    assert f"Data.dataset = {described!r}" in config  # not relative to where it started
    assert f"Data.eval_pattern = {str(tmp_path / 'data' / 'val-*-of-*.tfrecord')!r}" in (
        config)

    evaluated = _last_json(_tool("nasseg-eval", tmp_path, "--model_dir=runs/mine"))
    assert (evaluated["num_images"], evaluated["step"]) == (3, 2)
    results = json.loads((tmp_path / "runs" / "mine" / "eval_results.json").read_text())
    assert sorted(results["per_class_iou"]) == sorted(CLASSES)

    # The export carries the class names and colours: predict needs no --dataset.
    _tool("nasseg-export", tmp_path, "--model_dir=runs/mine", "--export_dir=export")
    _tool("nasseg-predict", tmp_path, "--saved_model=export",
          "--images=photos/val/images/*.png", "--output_dir=predictions")
    for index in range(3):
        assert _colours(tmp_path / "predictions" / f"val{index}_label.png") <= set(PALETTE)
        assert (tmp_path / "predictions" / f"val{index}_overlay.png").exists()

    # The run folder moved to another directory; the tools run from a third one.
    moved = tmp_path / "archive" / "2026" / "mine"
    moved.parent.mkdir(parents=True)
    shutil.move(str(tmp_path / "runs" / "mine"), str(moved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = _last_json(_tool("nasseg-eval", elsewhere, f"--model_dir={moved}"))
    assert again["miou"] == pytest.approx(evaluated["miou"], abs=1e-6)
    _tool("nasseg-predict", elsewhere, f"--model_dir={moved}",
          f"--images={tmp_path / 'photos' / 'val' / 'images' / '*.png'}",
          "--output_dir=predictions")
    for index in range(3):
        from_run = np.asarray(Image.open(elsewhere / "predictions" / f"val{index}_label.png"))
        from_export = np.asarray(Image.open(tmp_path / "predictions" /
                                            f"val{index}_label.png"))
        # The moved run's checkpoint and the export of the same checkpoint agree.
        assert np.mean(np.all(from_run == from_export, axis=-1)) >= 0.99
