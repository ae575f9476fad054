"""Gin experiments end to end on tiny settings: train, files, eval/predict CLIs, bad data."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import gin_runs
from nasseg_tf.internals import flatten_layers
from nasseg_tf.cli import configs
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, NetworkGenotype, load_genotype
from nasseg_tf.train.checkpointing import ArchitectureMismatchError
from nasseg_tf.data import ensure_demo_dataset, example_from_arrays, write_sharded
from nasseg_tf.export import dataset_metadata, export_saved_model

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "gin", "test", "tiny.gin")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demo_data"))
    ensure_demo_dataset(path, num_train=8, num_val=2, height=40, width=40, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    configs.parse([TINY], [f"Data.data_dir = '{data_dir}'"])
    out = gin_runs.train(model_dir, progress=False, argv=["nasseg-train", "--tiny"])
    return model_dir, out


def test_training_writes_every_run_file(tiny_run):
    model_dir, out = tiny_run
    for name in ("command_line.txt", "config.gin", "operative_config.gin",
                 "eval_results.json", "model.keras"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith(
        "ckpt-6")
    assert os.listdir(os.path.join(model_dir, "train"))  # TensorBoard events
    assert os.listdir(os.path.join(model_dir, "pictures"))
    assert os.listdir(os.path.join(model_dir, "eval"))  # TensorBoard prediction images
    assert "Training.steps = 6" in open(os.path.join(model_dir, "operative_config.gin")).read()
    assert out["metrics"]["step"] == 6
    losses = [h["loss"] for h in out["loop"].history]
    assert len(losses) == 6 and all(np.isfinite(losses))
    results = json.load(open(os.path.join(model_dir, "eval_results.json")))
    assert 0.0 <= results["miou"] <= 1.0 and results["num_images"] == 2


def _genotype(first_op="max_pool_3x3", block2_input=None):
    """The published cell on a 4-layer path, block 0's first edge set to ``first_op``."""
    published = load_genotype("autodeeplab_cityscapes")
    blocks = [list(block) for block in published.cell.blocks]
    blocks[0][0] = Edge(first_op, blocks[0][0].input)
    if block2_input is not None:
        blocks[2][0] = Edge(blocks[2][0].op, block2_input)
    return NetworkGenotype(CellGenotype(tuple(tuple(b) for b in blocks)), (0, 0, 0, 1),
                           "test").validate()


def test_a_checkpoint_refuses_an_edited_genotype_and_names_the_difference(tmp_path,
                                                                          data_dir):
    genotype = _genotype()
    source = str(tmp_path / "searched.json")
    genotype.save(source)
    model_dir = str(tmp_path / "run")
    bindings = [f"Data.data_dir = '{data_dir}'", "Training.steps = 1",
                "Training.eval_every = 0", f"Model.genotype = '{source}'"]
    configs.parse([TINY], bindings)
    gin_runs.train(model_dir)
    # The run resolved the genotype once, copied it and binds its config to the copy.
    copy = os.path.join(model_dir, "genotype.json")
    assert load_genotype(copy) == genotype
    assert "Model.genotype = 'genotype.json'" in open(
        os.path.join(model_dir, "config.gin"), encoding="utf-8").read()
    gin_runs.restore(model_dir)  # unchanged: restores

    for edited, difference in (
            (_genotype("skip_connect"), "genotype.cell.blocks[0][0][0]: 'max_pool_3x3' "
                                        "(checkpoint) vs 'skip_connect' (this model)"),
            (_genotype(block2_input=0), f"genotype.cell.blocks[2][0][1]: "
                                        f"{genotype.cell.blocks[2][0].input} (checkpoint) "
                                        "vs 0 (this model)")):
        edited.save(copy)  # the run folder's genotype, edited after training
        with pytest.raises(ArchitectureMismatchError) as error:
            gin_runs.restore(model_dir)
        assert difference in str(error.value)
        # Resuming the training into the edited architecture fails the same way.
        edited.save(source)
        configs.parse([TINY], bindings[:1] + ["Training.steps = 2"] + bindings[2:])
        with pytest.raises(ArchitectureMismatchError, match=re.escape(difference)):
            gin_runs.train(model_dir)
    genotype.save(source)


def test_rerunning_a_finished_run_trains_nothing(tiny_run, data_dir):
    model_dir, _ = tiny_run
    configs.parse([TINY], [f"Data.data_dir = '{data_dir}'"])
    out = gin_runs.train(model_dir, progress=False)
    assert out["metrics"]["step"] == 6 and out["loop"].history == []


def test_eval_cli_reports_miou(tiny_run):
    model_dir, _ = tiny_run
    result = subprocess.run([sys.executable, "-m", "nasseg_tf.cli.eval",
                             f"--model_dir={model_dir}",
                             "--gin_bindings=Evaluation.flip = True"],
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 6 and 0 <= summary["miou"] <= 1


def test_predict_from_checkpoint_and_from_saved_model_agree(tiny_run, tmp_path):
    model_dir, out = tiny_run
    image = np.random.default_rng(0).integers(0, 256, (37, 45, 3)).astype("uint8")
    Image.fromarray(image).save(tmp_path / "street.png")
    export = str(tmp_path / "export")
    from nasseg_tf.data import get_dataset_info  # pylint: disable=import-outside-toplevel
    export_saved_model(out["model"], export,
                       metadata=dataset_metadata(get_dataset_info("demo")))
    outputs = {}
    for source, flag in (("ckpt", f"--model_dir={model_dir}"),
                         ("saved", f"--saved_model={export}")):
        folder = tmp_path / source
        result = subprocess.run([sys.executable, "-m", "nasseg_tf.cli.predict", flag,
                                 f"--images={tmp_path / 'street.png'}",
                                 f"--output_dir={folder}"],
                                capture_output=True, text=True, env=_env(), timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[source] = np.asarray(Image.open(folder / "street_label.png"))
        assert np.asarray(Image.open(folder / "street_overlay.png")).shape == (37, 45, 3)
    np.testing.assert_array_equal(outputs["ckpt"], outputs["saved"])


def test_train_cli_reports_a_bad_binding(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nasseg_tf.cli.train",
                             f"--gin_file={TINY}", f"--model_dir={tmp_path}",
                             "--gin_bindings=Training.stepz = 3"],
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 2 and "stepz" in result.stderr


def test_unknown_dataset_is_named(tmp_path):
    configs.parse([TINY], ["Data.dataset = 'kitti'"])
    with pytest.raises(ValueError, match="kitti.*cityscapes"):
        gin_runs.train(str(tmp_path), progress=False)


def test_bad_label_late_in_the_data_fails_before_the_first_step(tmp_path):
    """A bad label in the last record is found by the pre-scan, not at step ~20."""
    rng = np.random.default_rng(0)
    examples = []
    for i in range(24):
        label = rng.integers(0, 8, (40, 40)).astype("uint8")
        if i == 23:
            label[5, 5] = 9  # demo has 8 classes
        examples.append(example_from_arrays(
            rng.integers(0, 256, (40, 40, 3)).astype("uint8"), label, f"frame_{i}.png"))
    write_sharded(examples, str(tmp_path / "data"), "train", 2)
    pattern = str(tmp_path / "data" / "train-*")
    model_dir = tmp_path / "run"
    run = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "nasseg-train"),
         f"--gin_file={TINY}", f"--model_dir={model_dir}",
         f"--gin_bindings=Data.train_pattern = '{pattern}'",
         f"--gin_bindings=Data.eval_pattern = '{pattern}'",
         "--gin_bindings=Training.steps = 40", "--gin_bindings=Training.batch_size = 1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    error = [l for l in run.stderr.splitlines() if l.startswith("nasseg-train: error:")]
    assert len(error) == 1, run.stderr[-3000:]
    assert "train-00001-of-00002.tfrecord record 11 ('frame_23.png')" in error[0]
    assert "label values [9]" in error[0]
    ckpts = model_dir / "checkpoints"
    assert not ckpts.exists() or not list(ckpts.glob("ckpt-*"))


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_mixed_bfloat16_training_runs_and_restores_the_policy(tmp_path, data_dir):
    import keras  # pylint: disable=import-outside-toplevel
    configs.parse([TINY], [f"Data.data_dir = '{data_dir}'", "Training.steps = 2",
                                  "Training.mixed_precision = 'mixed_bfloat16'",
                                  "Training.eval_every = 0"])
    out = gin_runs.train(str(tmp_path / "bf16"), progress=False)
    assert all(np.isfinite(h["loss"]) for h in out["loop"].history)
    assert out["model"].compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_sync_batch_norm_binding_builds_synchronized_batch_norms(tmp_path, data_dir):
    import keras  # pylint: disable=import-outside-toplevel

    configs.parse([TINY], [f"Data.data_dir = '{data_dir}'", "Training.steps = 1",
                                  "Training.sync_batch_norm = True"])
    out = gin_runs.train(str(tmp_path / "run"), progress=False, argv=["nasseg-train"])
    norms = [layer for layer in flatten_layers(out["model"])
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(n.synchronized for n in norms)


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_scheduled_drop_path_progress_follows_the_training_step(tmp_path, data_dir):
    configs.parse([TINY], [
        f"Data.data_dir = '{data_dir}'", "Training.steps = 4",
        "Model.overrides = {'filter_multiplier': 4, 'aspp_filters': 8, "
        "'decoder_filters': 8, 'aspp_rates': (1, 2, 3), 'path': (0, 0, 0, 1), "
        "'bn_momentum': 0.9, 'drop_path_keep_prob': 0.7}"])
    out = gin_runs.train(str(tmp_path / "run"), progress=False, argv=["nasseg-train"])
    progress = [v for v in out["model"].non_trainable_variables
                if v.name == "training_progress"]
    assert len(progress) == 4  # one per cell
    # Set before each step to step / total_steps: the last step is step 3 of 4.
    assert all(float(v.numpy()) == 0.75 for v in progress)
    assert np.isfinite(out["metrics"]["loss"])
