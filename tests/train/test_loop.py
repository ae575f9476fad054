"""The one training loop: resume after SIGKILL, NaN guard, multi-worker, gin files."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.data import ensure_demo_dataset
from nasseg_tf.train import experiment
from nasseg_tf.train.loop import NonFiniteLossError, Task, TrainLoop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "gin", "test", "tiny.gin")


def _train_cmd(model_dir, data_dir, *bindings):
    cmd = [sys.executable, "-m", "nasseg_tf.cli.train", f"--gin_file={TINY}",
           f"--model_dir={model_dir}", f"--gin_bindings=Data.data_dir = '{data_dir}'"]
    return cmd + [f"--gin_bindings={b}" for b in bindings]


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _final_weights(model_dir, worker=None):
    folder = os.path.join(model_dir, "checkpoints")
    if worker is not None:
        folder = os.path.join(model_dir, "checkpoints_workers", f"worker_{worker}")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder))
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(folder))
             if n.startswith("model/")]
    return {n: reader.get_tensor(n) for n in names}, int(reader.get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE"))


def _latest_step_at_least(folder, step):
    latest = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    return latest is not None and int(latest.rsplit("-", 1)[1]) >= step


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demo_data"))
    ensure_demo_dataset(path, num_train=8, num_val=2, height=40, width=40, seed=0)
    return path


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, data_dir):
    steps = ["Training.steps = 10", "Training.checkpoint_every = 2"]
    straight = str(tmp_path / "straight")
    subprocess.run(_train_cmd(straight, data_dir, *steps), env=_env(), check=True,
                   capture_output=True, timeout=600)

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(_train_cmd(killed, data_dir, *steps), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # Wait for the checkpoint *state* file to name ckpt-4 or later: the shard files
    # (ckpt-4.index) appear before the state file is (atomically) updated.
    while not _latest_step_at_least(os.path.join(killed, "checkpoints"), 4):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, step_at_kill = _final_weights(killed)
    assert 4 <= step_at_kill < 10
    subprocess.run(_train_cmd(killed, data_dir, *steps), env=_env(), check=True,
                   capture_output=True, timeout=600)

    expected, expected_step = _final_weights(straight)
    got, got_step = _final_weights(killed)
    assert got_step == expected_step == 10
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, err_msg=name)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_end_with_identical_weights(tmp_path, data_dir):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    model_dir = str(tmp_path / "mw")
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                             "index": index}})
        procs.append(subprocess.Popen(
            _train_cmd(model_dir, data_dir, "Training.strategy = 'multi_worker'",
                       "Training.steps = 3", "Training.eval_every = 0"),
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    chief, chief_step = _final_weights(model_dir)
    other, other_step = _final_weights(model_dir, worker=1)
    assert chief_step == other_step == 3
    trained = [n for n in chief if "moving_" not in n and "seed_generator" not in n]
    assert len(trained) > 50
    for name in trained:  # all-reduced gradients: bit-identical trainable weights
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # BN moving statistics come from each worker's own batches (no sync BN), so they
    # may differ; they must still have been updated and be finite.
    for name in set(chief) - set(trained):
        assert np.all(np.isfinite(chief[name])) and np.all(np.isfinite(other[name]))


class _NaNAfter(Task):
    """A one-variable task whose loss turns NaN at step ``bad_step``."""

    def __init__(self, bad_step):
        self.bad_step = bad_step

    def build(self):
        self.w = tf.Variable(1.0)

    def checkpoint_items(self):
        return {"w": self.w}

    def make_inputs(self, strategy, start_step):
        return (tf.data.Dataset.from_tensors(1.0).repeat(),)

    def train_step(self, step, batch, phase=None):
        self.w.assign_add(batch)
        nan = tf.where(step + 1 >= self.bad_step, np.nan, 0.0)
        return {"loss": self.w + nan}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    loop = TrainLoop(_NaNAfter(bad_step=5), tf.distribute.get_strategy(), str(tmp_path),
                     total_steps=10, checkpoint_every=2, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"loss=nan at step 5.*ckpt-4"):
        loop.run()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")


def test_bad_gin_binding_is_a_clear_error():
    with pytest.raises(ValueError, match="stepz"):
        experiment.parse_gin([TINY], ["Training.stepz = 3"])
    with pytest.raises(FileNotFoundError, match="nope.gin"):
        experiment.parse_gin(["nope.gin"])


GIN_FILES = sorted(glob.glob(os.path.join(REPO, "gin", "**", "*.gin"), recursive=True))


@pytest.mark.parametrize("path", GIN_FILES, ids=[os.path.relpath(p, REPO) for p in GIN_FILES])
def test_every_gin_file_parses_and_builds_its_model(path):
    from nasseg_tf.search import autodeeplab_search  # registers Supernet / Search
    experiment.parse_gin([path])
    if os.path.basename(path).startswith("base_"):
        return  # a fragment included by the others
    from nasseg_tf.data import get_dataset_info  # pylint: disable=import-outside-toplevel
    if os.path.basename(path).startswith("dpc_"):
        from nasseg_tf.search import dpc_proxy, dpc_tuner  # pylint: disable=import-outside-toplevel
        cfg, proxy = dpc_tuner.DPCSearchConfig(), dpc_proxy.ProxyConfig()
        assert cfg.max_trials > 0 and proxy.steps > 0
        get_dataset_info(experiment.DataConfig().dataset)
        return
    if os.sep + "search" + os.sep in path:
        cfg = autodeeplab_search.SearchConfig()
        info = get_dataset_info(experiment.DataConfig().dataset)
        net = autodeeplab_search.build_supernet(info.num_classes)  # layers, no weights yet
        assert net.num_layers >= 1 and 0 <= cfg.warmup_steps <= cfg.steps
        return
    data = experiment.DataConfig()
    train_cfg = experiment.TrainConfig()
    info = get_dataset_info(data.dataset)
    model = experiment.build_model(info.num_classes)
    assert model.output_shape[-1] == info.num_classes
    assert train_cfg.steps > 0 and train_cfg.batch_size > 0
