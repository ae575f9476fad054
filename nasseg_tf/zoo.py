"""Public model-zoo API: ``nasseg_tf.zoo.list_models()`` and ``nasseg_tf.zoo.build()``."""

from nasseg_tf.models.zoo import build, get_spec, list_models, register_model  # noqa: F401
