"""nasseg_tf: Auto-DeepLab and Dense Prediction Cell for Keras 3 / TensorFlow 2.

Layers and models in this package use ``keras.ops`` only, so the model zoo runs on
any Keras backend (TensorFlow, JAX). TensorFlow-specific code lives in
``nasseg_tf.data``, ``nasseg_tf.train`` and ``nasseg_tf.export``.

``import nasseg_tf`` registers every Keras layer and model of the package (the
modules below import Keras, not TensorFlow: on the JAX backend TensorFlow stays out),
so ``keras.saving.load_model("model.keras")`` needs nothing else. TensorFlow's
start-up log lines are filtered by ``TF_CPP_MIN_LOG_LEVEL`` (default: no INFO; see
:mod:`nasseg_tf.startup`).
"""

__version__ = "0.1.0"


def __getattr__(name):
    """``nasseg_tf.zoo`` is the model zoo (:mod:`nasseg_tf.models.zoo`), loaded on first
    use."""
    if name == "zoo":
        import importlib  # pylint: disable=import-outside-toplevel

        return importlib.import_module("nasseg_tf.models.zoo")
    raise AttributeError(f"module 'nasseg_tf' has no attribute {name!r}")


# Last, once the names above exist: the modules that register Keras objects.
# pylint: disable=wrong-import-position
from nasseg_tf import startup  # noqa: E402

startup.configure_command_line()
with startup.quiet_tensorflow_import():
    from nasseg_tf import layers  # noqa: E402  (cells, ops, ASPP, DPC, decoder, resize)
    from nasseg_tf.search.autodeeplab import supernet as _search_layers  # noqa: E402

#: The modules whose import registers the package's Keras layers and models.
KERAS_MODULES = (layers, _search_layers)
