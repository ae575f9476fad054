"""FusedSGD: Keras' SGD, one op per variable update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_checks import mirrored_strategy
from nasseg_tf.train.optimizers import FusedSGD

SHAPES = [(3, 3, 4, 8), (8,), (5, 7), ()]


def _variables(seed):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=s).astype("float32"), name=f"v{i}")
            for i, s in enumerate(SHAPES)]


def _grads(step):
    rng = np.random.default_rng(100 + step)
    return [tf.constant(rng.normal(size=s).astype("float32")) for s in SHAPES]


def _run(cls, nesterov, compiled, steps=5):
    variables = _variables(0)
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 10, alpha=0.1)
    optimizer = cls(schedule, momentum=0.9, nesterov=nesterov)
    optimizer.build(variables)

    def apply(grads):
        optimizer.apply_gradients(zip(grads, variables))

    if compiled:
        apply = tf.function(apply, autograph=False)
    for step in range(steps):
        apply(_grads(step))
    return ([v.numpy() for v in variables], [m.numpy() for m in optimizer.momentums],
            int(optimizer.iterations.numpy()))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_fused_sgd_equals_keras_sgd(nesterov, compiled):
    fused = _run(FusedSGD, nesterov, compiled)
    reference = _run(keras.optimizers.SGD, nesterov, compiled)
    assert fused[2] == reference[2] == 5
    for got, want in zip(fused[0] + fused[1], reference[0] + reference[1]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    start = _variables(0)
    assert not np.allclose(fused[0][0], start[0].numpy())  # the updates did something


def test_fused_sgd_traces_one_op_per_variable():
    variables = [keras.Variable(np.zeros((4, 4), "float32")) for _ in range(40)]
    grads = [tf.ones((4, 4)) for _ in variables]

    def count(cls):
        optimizer = cls(0.1, momentum=0.9)
        optimizer.build(variables)
        graph = tf.function(lambda: optimizer.apply_gradients(zip(grads, variables)),
                            autograph=False).get_concrete_function().graph
        return [op.type for op in graph.get_operations()]

    fused, reference = count(FusedSGD), count(keras.optimizers.SGD)
    assert fused.count("ResourceApplyKerasMomentum") == 40
    assert "AssignAddVariableOp" not in fused  # Keras SGD adds m to each variable
    # The rest are the variables' handles and casts, shared by both.
    assert len(reference) - len(fused) >= 5 * 40, (len(fused), len(reference))


def test_fused_sgd_without_momentum_and_checkpoints_are_keras_sgd(tmp_path):
    assert np.allclose(_run_plain(FusedSGD), _run_plain(keras.optimizers.SGD))
    # Same variables, same checkpoint: a Keras SGD checkpoint restores into FusedSGD.
    variables = _variables(1)
    saved = keras.optimizers.SGD(0.1, momentum=0.9)
    saved.build(variables)
    saved.apply_gradients(zip(_grads(0), variables))
    path = tf.train.Checkpoint(optimizer=saved).save(str(tmp_path / "ckpt"))
    restored = FusedSGD(0.1, momentum=0.9)
    restored.build(variables)
    tf.train.Checkpoint(optimizer=restored).restore(path).assert_consumed()
    for got, want in zip(restored.momentums, saved.momentums):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def _run_plain(cls):
    variables = _variables(2)
    optimizer = cls(0.05)
    optimizer.build(variables)
    for step in range(3):
        optimizer.apply_gradients(zip(_grads(step), variables))
    return np.concatenate([v.numpy().ravel() for v in variables])


def test_fused_sgd_under_a_mirrored_strategy_equals_keras_sgd():
    strategy = mirrored_strategy()

    def run(cls):
        with strategy.scope():
            variables = _variables(3)
            optimizer = cls(0.1, momentum=0.9)
            optimizer.build(variables)

        @tf.function(autograph=False)
        def step(directions):
            def replica_fn(directions):
                with tf.GradientTape() as tape:
                    loss = tf.add_n([tf.reduce_sum(v * d)
                                     for v, d in zip(variables, directions)])
                grads = tape.gradient(loss, variables)
                optimizer.apply_gradients(zip(grads, variables))
            strategy.run(replica_fn, args=(directions,))

        for i in range(3):
            step(_grads(i))
        return [v.numpy() for v in variables] + [m.numpy() for m in optimizer.momentums]

    fused, reference = run(FusedSGD), run(keras.optimizers.SGD)
    for got, want in zip(fused, reference):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(fused[0], _variables(3)[0].numpy())
