"""The one training loop: resume after SIGKILL, NaN guard, multi-worker, gin files."""

import gc
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.func_graph import FuncGraph

from nasseg_tf import internals
from nasseg_tf.data import ensure_demo_dataset
from nasseg_tf.train.loop import NonFiniteLossError, Task, TrainLoop
from nasseg_tf.train.segmentation import SegmentationTask

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

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


@pytest.mark.slow  # ~1.5 min: two training runs, one killed (make test-all)
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


@pytest.mark.slow  # two workers over loopback gRPC (make test-all)
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
    """A one-variable task that turns NaN at step ``bad_step``: in its loss, or (with
    ``in_weights``) only in the update after a finite loss, which a loss check misses."""

    def __init__(self, bad_step, in_weights=False):
        self.bad_step = bad_step
        self.in_weights = in_weights

    def build(self):
        self.w = tf.Variable(1.0)

    def checkpoint_items(self):
        return {"w": self.w}

    def make_inputs(self, strategy, start_step):
        return (tf.data.Dataset.from_tensors(0.01).repeat(),)

    def train_step(self, step, batch, phase=None):
        nan = tf.where(step + 1 >= self.bad_step, np.nan, 0.0)
        if self.in_weights:
            loss = tf.identity(self.w)
            self.w.assign_add(batch + nan)
            return {"loss": loss}
        self.w.assign_add(batch)
        return {"loss": self.w + nan}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    loop = TrainLoop(_NaNAfter(bad_step=5), tf.distribute.get_strategy(), str(tmp_path),
                     total_steps=10, checkpoint_every=2, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"loss=nan at step 5.*ckpt-4"):
        loop.run()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")


def test_nonfinite_weights_are_never_checkpointed(tmp_path):
    loop = TrainLoop(_NaNAfter(bad_step=3, in_weights=True), tf.distribute.get_strategy(),
                     str(tmp_path), total_steps=10, checkpoint_every=1, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"1 of 1 tensors after step 3.*ckpt-2"):
        loop.run()
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest.endswith("ckpt-2")
    assert not glob.glob(str(tmp_path / "checkpoints" / "ckpt-3*"))
    assert np.isfinite(tf.train.load_checkpoint(latest).get_tensor(
        "w/.ATTRIBUTES/VARIABLE_VALUE"))


def test_interrupted_saves_are_removed_on_the_next_start(tmp_path):
    loop = TrainLoop(_NaNAfter(bad_step=100), tf.distribute.get_strategy(), str(tmp_path),
                     total_steps=2, checkpoint_every=1, progress=False)
    loop.run()
    folder = tmp_path / "checkpoints"
    (folder / "ckpt-3_temp").mkdir()  # what a kill inside save() leaves
    (folder / "ckpt-3_temp" / "part-00000-of-00001.index").write_bytes(b"x")
    (folder / "ckpt-3.index").write_bytes(b"x")  # written, never named in `checkpoint`
    TrainLoop(_NaNAfter(bad_step=100), tf.distribute.get_strategy(), str(tmp_path),
              total_steps=4, checkpoint_every=1, progress=False).run()
    assert not (folder / "ckpt-3_temp").exists()
    assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-4")
    np.testing.assert_equal(tf.train.load_checkpoint(str(folder / "ckpt-3")).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE"), 3)


def _all_finite(prefix):
    reader = tf.train.load_checkpoint(prefix)
    tensors = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()]
    floats = [t for t in tensors if getattr(t, "dtype", np.dtype(object)).kind == "f"]
    assert len(floats) > 10
    return all(np.all(np.isfinite(t)) for t in floats)


def _segmentation_run(model_dir, learning_rate, steps, checkpoint_every):
    """A small real segmenter (conv + BN + logits) trained by SegmentationTask with SGD
    and momentum at ``learning_rate``: the loop and task of ``nasseg-train``."""
    def model_fn():
        keras.utils.set_random_seed(0)
        images = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 127.5, -1)(images)
        for i in range(3):
            x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name=f"c{i}")(x)
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
            x = keras.layers.ReLU()(x)
        return keras.Model(images, keras.layers.Conv2D(3, 1, name="logits")(x))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 16, 16, 3)).astype("float32")
    labels = (images[..., 0] > 127).astype("int32") + (images[..., 1] > 127)

    def input_fn(ctx, start_batch):
        return tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(
            4).skip(start_batch)

    task = SegmentationTask(model_fn, input_fn, learning_rate=learning_rate,
                            total_steps=steps)
    return TrainLoop(task, tf.distribute.get_strategy(), model_dir, steps,
                     checkpoint_every=checkpoint_every, progress=False).run()


def test_diverged_run_names_a_good_checkpoint_that_a_sane_rerun_resumes(tmp_path):
    model_dir = str(tmp_path / "run")
    _segmentation_run(model_dir, 0.01, steps=2, checkpoint_every=2)
    with pytest.raises(ArithmeticError, match="last good checkpoint is") as failure:
        _segmentation_run(model_dir, 1e12, steps=6, checkpoint_every=1)
    named = str(failure.value).split("last good checkpoint is ")[1].split(";")[0]
    assert named.endswith("ckpt-2"), str(failure.value)
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) == named
    assert _all_finite(named)
    assert _segmentation_run(model_dir, 0.01, steps=6, checkpoint_every=2)["step"] == 6


class _Fit(Task):
    """One weight fitted by a Keras optimizer (whose cross-replica gradient sum is the
    ``custom_gradient`` that makes TensorFlow keep every traced step's graph alive)."""

    def build(self):
        self.w = tf.Variable(0.0)
        self.optimizer = keras.optimizers.SGD(0.1)

    def checkpoint_items(self):
        return {"w": self.w}

    def make_inputs(self, strategy, start_step):
        return (tf.data.Dataset.from_tensors(1.0).repeat().map(lambda x: x * 2.0),)

    def train_step(self, step, batch, phase=None):
        with tf.GradientTape() as tape:
            loss = tf.square(self.w - batch)
        self.optimizer.apply_gradients([(tape.gradient(loss, self.w), self.w)])
        return {"loss": loss}


def _live_iterators(monkeypatch):
    """Weak references to the resource of every ``tf.data`` iterator created from now."""
    from tensorflow.python.data.ops import iterator_ops  # pylint: disable=import-outside-toplevel

    created, original = [], iterator_ops.OwnedIterator._create_iterator

    def create(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(weakref.ref(self._iterator_resource))

    monkeypatch.setattr(iterator_ops.OwnedIterator, "_create_iterator", create)
    return created


def test_a_finished_run_releases_its_input_iterators(tmp_path, monkeypatch):
    # Regression: the compiled step captured its iterators, TensorFlow keeps traced step
    # graphs alive, and the iterators (with their tf.data threads) then lived until
    # interpreter exit, whose teardown of them took minutes in tools running many loops.
    created = _live_iterators(monkeypatch)
    loop = TrainLoop(_Fit(), tf.distribute.get_strategy(), str(tmp_path), total_steps=3,
                     checkpoint_every=0, progress=False)
    assert loop.run()["step"] == 3
    del loop
    gc.collect()
    assert created and all(ref() is None for ref in created)


def _live_func_graphs():
    gc.collect()
    return [weakref.ref(o) for o in gc.get_objects() if isinstance(o, FuncGraph)]


def test_finished_runs_leave_no_traced_graphs_behind(tmp_path):
    # Regression (tensorflow/tensorflow#97697): the optimizer's cross-replica gradient
    # sum registered a custom gradient per traced step, whose registry entry kept the
    # step's graph alive until exit: memory grew with every loop a process ran.
    before = internals.custom_gradient_names()
    for run in range(2):
        loop = TrainLoop(_Fit(), tf.distribute.get_strategy(), str(tmp_path / str(run)),
                         total_steps=2, checkpoint_every=0, progress=False)
        assert loop.run()["step"] == 2
        del loop
        if run == 0:
            graphs = len(_live_func_graphs())
    assert internals.custom_gradient_names() == before
    assert len(_live_func_graphs()) == graphs
