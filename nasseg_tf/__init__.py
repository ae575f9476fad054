"""nasseg_tf: Auto-DeepLab and Dense Prediction Cell for Keras 3 / TensorFlow 2.

Layers and models in this package use ``keras.ops`` only, so the model zoo runs on
any Keras backend (TensorFlow, JAX). TensorFlow-specific code lives in
``nasseg_tf.data``, ``nasseg_tf.train`` and ``nasseg_tf.export``.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """``nasseg_tf.zoo`` is the model zoo (:mod:`nasseg_tf.models.zoo`), loaded lazily so
    that importing the package stays cheap."""
    if name == "zoo":
        import importlib  # pylint: disable=import-outside-toplevel

        return importlib.import_module("nasseg_tf.models.zoo")
    raise AttributeError(f"module 'nasseg_tf' has no attribute {name!r}")
