"""One helper that checks what every layer must do (STYLE.md, "a good layer test").

* symbolic and eager output shapes agree with ``compute_output_shape``;
* ``get_config`` → ``from_config`` → ``get_config`` gives identical JSON;
* every trainable variable gets a finite, non-zero gradient;
* one SGD step under ``MirroredStrategy`` over 2 logical CPUs runs and changes weights.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from nasseg_tf.fileio import TEMP_MARKER

#: The repository root (gin/, tools/, README.md).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _as_list(shapes):
    return shapes if isinstance(shapes, list) else [shapes]


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=s).astype("float32") for s in _as_list(shapes)]
    return arrays if isinstance(shapes, list) else arrays[0]


def _symbolic(shapes):
    keras_inputs = [keras.Input(batch_shape=(None,) + tuple(s[1:])) for s in _as_list(shapes)]
    return keras_inputs if isinstance(shapes, list) else keras_inputs[0]


def check_layer(make_layer, input_shapes, expected_shape, check_grads=True):
    """Runs all checks on ``make_layer()``; returns the (built) eager layer."""
    # Symbolic shape.
    layer = make_layer()
    sym_out = layer(_symbolic(input_shapes))
    assert tuple(sym_out.shape[1:]) == tuple(expected_shape[1:]), sym_out.shape

    # Eager shape, equal to compute_output_shape.
    layer = make_layer()
    x = _inputs(input_shapes, 0)
    y = layer(x, training=True)
    assert tuple(y.shape) == tuple(expected_shape), (y.shape, expected_shape)
    shapes = ([tuple(s) for s in input_shapes] if isinstance(input_shapes, list)
              else tuple(input_shapes))
    assert tuple(layer.compute_output_shape(shapes)) == tuple(expected_shape)

    # Config round trip to identical JSON; the clone computes the same function.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True)
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)),
                               np.asarray(layer(x, training=False)), atol=1e-5)

    if check_grads:
        _check_gradients(layer, x, expected_shape)
        _check_mirrored_step(make_layer, input_shapes, expected_shape)
    return layer


def _check_gradients(layer, x, expected_shape):
    # A random projection: sum(y) would give zero gradients through batch norm.
    proj = tf.constant(np.random.default_rng(1).normal(size=expected_shape), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * proj)
    variables = layer.trainable_variables
    grads = tape.gradient(loss, variables)
    for var, grad in zip(variables, grads):
        assert grad is not None, f"no gradient for {var.path}"
        g = np.asarray(grad)
        assert np.all(np.isfinite(g)), f"non-finite gradient for {var.path}"
        assert np.any(g != 0), f"zero gradient for {var.path}"


_STRATEGY = []


def mirrored_strategy():
    """One MirroredStrategy over 2 logical CPUs per process.

    Several strategies in one process can collide on collective-op instance keys
    ("Shape mismatch in the collective instance"), so the tests share one.
    """
    if not _STRATEGY:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        assert len(devices) == 2, "tests/conftest.py should create 2 logical CPUs"
        _STRATEGY.append(tf.distribute.MirroredStrategy(devices))
    return _STRATEGY[0]


def _check_mirrored_step(make_layer, input_shapes, expected_shape):
    strategy = mirrored_strategy()
    x = _inputs(input_shapes, 2)
    proj = tf.constant(np.random.default_rng(3).normal(size=expected_shape), tf.float32)
    with strategy.scope():
        layer = make_layer()
        layer(x)
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(layer.trainable_variables)
    if not layer.trainable_variables:
        return
    before = [np.asarray(v).copy() for v in layer.trainable_variables]

    @tf.function
    def step(inputs):
        def replica_fn(inputs):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(inputs, training=True) * proj)
            grads = tape.gradient(loss, layer.trainable_variables)
            optimizer.apply_gradients(zip(grads, layer.trainable_variables))
            return loss
        return strategy.run(replica_fn, args=(inputs,))

    step(x)
    after = [np.asarray(v) for v in layer.trainable_variables]
    assert any(np.any(a != b) for a, b in zip(after, before))


def run_on_jax(script, *args, timeout=300, **run_kwargs):
    """Runs ``python -c script args...`` on Keras' JAX backend (CPU) in a subprocess.

    Tests compare its saved outputs with TensorFlow's for the same weights. XLA's LLVM
    optimisation level 0 saves about a third of the many small compiles.
    """
    import os  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    run_kwargs.setdefault("check", True)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                          timeout=timeout, **run_kwargs)


def check_png(path, min_width=500, min_height=200):
    assert os.path.getsize(path) > 10_000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()  # decodes every pixel
        width, height = image.size
    assert min_width <= width <= 4000 and min_height <= height <= 2000
    assert not [name for name in os.listdir(os.path.dirname(os.path.abspath(path)))
                if TEMP_MARKER in name]  # written atomically
    return width, height
