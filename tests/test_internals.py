"""Every private Keras / KerasTuner / TensorFlow symbol the package uses still exists;
the adapters built on them work."""

import gc
import weakref

import keras_tuner

from nasseg_tf import internals


def test_every_private_symbol_used_exists_in_the_installed_libraries():
    assert internals.check_private_symbols() == [], (
        "an upgrade removed private symbols that nasseg_tf.internals adapts: "
        f"{internals.check_private_symbols()}")
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("x", "max"), max_trials=1)
    assert internals.oracle_retry_queue(oracle) == []  # an instance attribute


def test_a_missing_symbol_is_reported_by_name(monkeypatch):
    monkeypatch.setattr(internals, "PRIVATE_SYMBOLS", internals.PRIVATE_SYMBOLS + (
        ("keras", "Layer._no_such_method"), ("no_such_module_xyz", None)))
    assert internals.check_private_symbols() == ["keras.Layer._no_such_method",
                                                 "no_such_module_xyz"]


def _traced_custom_gradient():
    """Traces a function using ``tf.custom_gradient``; a weak reference to its graph."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    @tf.custom_gradient
    def double(x):
        return 2.0 * x, lambda dy: 2.0 * dy

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = double(x)
        return tape.gradient(y, x)

    concrete = step.get_concrete_function(tf.TensorSpec([], tf.float32))
    assert float(concrete(tf.constant(1.0))) == 2.0
    return weakref.ref(concrete.graph)


def test_releasing_custom_gradients_frees_only_the_graphs_traced_inside():
    # tensorflow/tensorflow#97697: a traced tf.custom_gradient's registry entry keeps its
    # graph alive until exit; the optimizer's cross-replica sum makes one per train step.
    outside = _traced_custom_gradient()
    before = internals.custom_gradient_names()
    with internals.releasing_custom_gradients():
        inside = _traced_custom_gradient()
        assert len(internals.custom_gradient_names() - before) == 1
    gc.collect()
    assert internals.custom_gradient_names() == before
    assert inside() is None
    assert outside() is not None  # registered before the block: not ours to drop
