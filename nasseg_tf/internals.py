"""The one adapter for private Keras, KerasTuner and TensorFlow internals.

Everything the package needs that the libraries do not offer publicly goes through
this module, and nowhere else, so that an upgrade that removes or renames one breaks
exactly here: ``tests/test_internals.py`` checks every symbol listed in
:data:`PRIVATE_SYMBOLS` and fails naming the one that is gone.

What is used, and why:

* ``keras.Layer._flatten_layers`` — every sub-layer of a layer, recursively (Keras has
  no public walk over nested layers that are not in a functional graph); used to find
  batch norms inside search cells and to count Multiply-Adds per leaf layer.
* ``keras_tuner.src.protos`` and ``keras_tuner.src.distribute.oracle_chief`` — the
  chief's gRPC oracle service, to serve an oracle with our own poll loop (KerasTuner
  only serves it from inside its own ``Tuner.search``).
* KerasTuner's ``Oracle`` internals: ``_get_oracle_fname`` and ``_get_trial_dir`` (where
  its state and trials live: our oracles write them atomically and resume them),
  ``_retry_queue`` (trials to hand out again after a restart), ``BaseTuner``'s
  ``_get_tuner_fname`` (its ``tuner0.json``, which our tuner writes atomically too) and
  the hooks our subclasses override — ``Oracle._save_trial`` and ``BaseTuner``'s
  ``_populate_initial_space``, ``_run_and_update_trial`` and ``_is_worker``.
* TensorFlow's eager ``context._initialized`` — whether the runtime has started (the
  CPU can be split into logical devices only before).
* TensorFlow's gradient registry ``ops._gradient_registry._registry`` — to drop the
  ``CustomGradient-*`` entries a finished training loop or proxy trial registered
  (:func:`releasing_custom_gradients`): every traced train step registers one through
  the optimizer's cross-replica gradient sum (``ReplicaContext.all_reduce`` wraps it in
  ``tf.custom_gradient``, under every strategy, the default one included), and the
  entry's closure holds the step's whole graph until the process exits
  (tensorflow/tensorflow#97697, fixed upstream by #109334, not in TensorFlow 2.21).
  Keras offers no public way to apply gradients without that sum.
"""

import contextlib
import importlib

#: ``(module, attribute path)`` of every private symbol used, for the upgrade test.
PRIVATE_SYMBOLS = (
    ("keras", "Layer._flatten_layers"),
    ("keras_tuner.src.protos", "get_service_grpc"),
    ("keras_tuner.src.distribute.oracle_chief", "OracleServicer"),
    ("keras_tuner", "Oracle._get_oracle_fname"),
    ("keras_tuner", "Oracle._get_trial_dir"),
    ("keras_tuner", "Oracle._save_trial"),
    ("keras_tuner.engine.base_tuner", "BaseTuner._populate_initial_space"),
    ("keras_tuner.engine.base_tuner", "BaseTuner._run_and_update_trial"),
    ("keras_tuner.engine.base_tuner", "BaseTuner._is_worker"),
    ("keras_tuner.engine.base_tuner", "BaseTuner._get_tuner_fname"),
    ("tensorflow.python.eager.context", "context"),
    ("tensorflow.python.framework.ops", "_gradient_registry._registry"),
)

#: The name prefix of the gradient functions ``tf.custom_gradient`` registers in graphs.
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def check_private_symbols():
    """Names of the :data:`PRIVATE_SYMBOLS` missing in the installed libraries."""
    missing = []
    for module_name, attribute in PRIVATE_SYMBOLS:
        try:
            value = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        for part in (attribute.split(".") if attribute else ()):
            if not hasattr(value, part):
                missing.append(f"{module_name}.{attribute}")
                break
            value = getattr(value, part)
    return missing


def flatten_layers(layer, include_self=False, recursive=True):
    """Every sub-layer of ``layer`` (depth first), optionally ``layer`` itself."""
    return list(layer._flatten_layers(  # pylint: disable=protected-access
        include_self=include_self, recursive=recursive))


def keras_tuner_grpc():
    """``(protos, oracle_chief)``: KerasTuner's oracle service modules."""
    protos = importlib.import_module("keras_tuner.src.protos")
    oracle_chief = importlib.import_module("keras_tuner.src.distribute.oracle_chief")
    return protos, oracle_chief


def oracle_state_file(oracle):
    """The path of a KerasTuner oracle's state file (``oracle.json``)."""
    return oracle._get_oracle_fname()  # pylint: disable=protected-access


def oracle_trial_dir(oracle, trial_id):
    """The folder of a KerasTuner oracle's trial ``trial_id``."""
    return oracle._get_trial_dir(trial_id)  # pylint: disable=protected-access


def tuner_state_file(tuner):
    """The path of a KerasTuner tuner's state file (``<tuner_id>.json``)."""
    return tuner._get_tuner_fname()  # pylint: disable=protected-access


def oracle_retry_queue(oracle):
    """A KerasTuner oracle's list of trial ids to hand out again (mutable, in place)."""
    return oracle._retry_queue  # pylint: disable=protected-access


def tensorflow_runtime_started():
    """Whether TensorFlow's eager runtime has been initialised in this process."""
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel

    return bool(getattr(context.context(), "_initialized", False))


def _gradient_registry():
    """TensorFlow's global ``{op type: gradient function entry}`` dict (mutable)."""
    from tensorflow.python.framework import ops  # pylint: disable=import-outside-toplevel

    return ops._gradient_registry._registry  # pylint: disable=protected-access


def custom_gradient_names():
    """The ``CustomGradient-*`` names registered in TensorFlow's gradient registry now."""
    return {name for name in list(_gradient_registry())
            if name.startswith(CUSTOM_GRADIENT_PREFIX)}


@contextlib.contextmanager
def releasing_custom_gradients():
    """Drops, on exit, the ``CustomGradient-*`` registrations made inside the block.

    Wrap a whole training loop or proxy trial in it: the graphs traced inside (their
    ``tf.function`` train steps) are then freed once nothing else refers to them,
    instead of living until the process exits (tensorflow/tensorflow#97697). The
    registrations are needed only to differentiate those graphs again, which nothing
    does once the block's compiled steps are done; entries that existed before the
    block (anybody else's) are kept. Traces made by other threads during the block
    would lose theirs too: the package traces train steps from one thread only.
    """
    registry = _gradient_registry()
    before = custom_gradient_names()
    try:
        yield
    finally:
        for name in custom_gradient_names() - before:
            registry.pop(name, None)
