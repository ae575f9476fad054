"""Every private Keras / KerasTuner / TensorFlow symbol the package uses still exists."""

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
