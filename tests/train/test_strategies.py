"""Strategies: the replica count asked for is the one trained with, or a clear error.

The tests run the installed console scripts in fresh processes from a scratch folder:
this test process has its devices configured by conftest, which would hide the defect
where listing devices starts TensorFlow's runtime before the CPU can be split.
"""

import json
import os
import subprocess
import sys

import pytest

from nasseg_tf.data import ensure_demo_dataset
from console import run_console

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "gin", "test", "tiny.gin")


_run = run_console


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demo_data"))
    ensure_demo_dataset(path, num_train=8, num_val=2, height=40, width=40, seed=0)
    return path


def _replicas(model_dir):
    with open(os.path.join(model_dir, "run_info.json"), encoding="utf-8") as f:
        return json.load(f)


def test_console_train_with_mirrored_trains_on_two_cpu_replicas(tmp_path, data_dir):
    run = _run("nasseg-train", tmp_path, f"--gin_file={TINY}", "--model_dir=run",
               f"--gin_bindings=Data.data_dir = '{data_dir}'",
               "--gin_bindings=Training.strategy = 'mirrored'",
               "--gin_bindings=Training.num_cpu_devices = 2",
               "--gin_bindings=Training.steps = 1", "--gin_bindings=Training.eval_every = 0",
               "--gin_bindings=Evaluation.max_images = 1",
               "--gin_bindings=Evaluation.num_pictures = 0")
    assert run.returncode == 0, run.stderr[-3000:]
    info = _replicas(tmp_path / "run")
    assert info["replicas"] == 2 and len(info["devices"]) == 2, info
    assert "replicas: 2" in run.stdout


@pytest.mark.slow  # the training test above covers the same strategy code (make test-all)
def test_console_search_with_mirrored_trains_on_two_cpu_replicas(tmp_path, data_dir):
    run = _run("nasseg-search-autodeeplab", tmp_path, "--model_dir=search",
               *[f"--gin_bindings={b}" for b in (
                   "Data.dataset = 'demo'", f"Data.data_dir = '{data_dir}'",
                   "Supernet.num_layers = 2", "Supernet.num_blocks = 1",
                   "Supernet.filter_multiplier = 2", "Search.steps = 2",
                   "Search.warmup_steps = 1", "Search.batch_size = 2",
                   "Search.crop_size = (32, 32)", "Search.decode_every = 0",
                   "Search.strategy = 'mirrored'", "Search.num_cpu_devices = 2")])
    assert run.returncode == 0, run.stderr[-3000:]
    assert _replicas(tmp_path / "search")["replicas"] == 2


def test_console_train_asking_for_missing_gpus_is_a_clear_error(tmp_path, data_dir):
    run = _run("nasseg-train", tmp_path, f"--gin_file={TINY}", "--model_dir=run",
               f"--gin_bindings=Data.data_dir = '{data_dir}'",
               "--gin_bindings=Training.strategy = 'mirrored'",
               "--gin_bindings=Training.num_gpus = 64")
    assert run.returncode == 2, run.stderr[-3000:]
    lines = [l for l in run.stderr.splitlines() if l.startswith("nasseg-train:")]
    assert len(lines) == 1 and "num_gpus=64" in lines[0], run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_cpu_split_after_the_runtime_started_is_a_clear_error():
    code = ("import tensorflow as tf\n"
            "tf.constant(1.0) + 1.0\n"  # starts the runtime with one CPU device
            "from nasseg_tf.train import strategies\n"
            "try:\n"
            "    strategies.make_strategy('mirrored', num_cpu_devices=3)\n"
            "except strategies.StrategyError as e:\n"
            "    print('ERROR', e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert "ERROR cannot split the CPU into 3 devices" in run.stdout, run.stderr[-2000:]


def test_unknown_strategy_lists_the_known_ones():
    from nasseg_tf.train import strategies  # pylint: disable=import-outside-toplevel

    with pytest.raises(ValueError, match="mirrored"):
        strategies.make_strategy("mirored")
