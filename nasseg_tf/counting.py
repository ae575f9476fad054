"""Parameter and Multiply-Add counting for any Keras model at a given input size.

The model is traced symbolically (a ``tf.function`` trace on TensorFlow,
``jax.eval_shape`` on JAX — no arithmetic is run) while every
leaf layer records the real shapes it sees, so nested layers (cells, heads) are counted
with their true output sizes, strides and dilations.

What is counted as Multiply-Adds (one MAdd = one multiply + one add):

* ``Conv2D`` (any dilation): ``H_out·W_out · k_h·k_w · C_in/groups · C_out``;
* ``DepthwiseConv2D``: ``H_out·W_out · k_h·k_w · C_in · depth_multiplier``;
* ``SeparableConv2D``: its depthwise plus its pointwise part;
* ``Dense``: ``positions · C_in · C_out``.

Not counted: biases, batch norm, activations, pooling, bilinear resizing, additions
and concatenation (the convention of the papers' tables, which count conv and fc
Multiply-Adds). ``params`` counts trainable weights (conv kernels, BN γ/β, biases; BN
moving statistics are not trainable and not counted), matching Auto-DeepLab Table 2.
"""

import dataclasses
import math

import keras

from nasseg_tf.internals import flatten_layers



@dataclasses.dataclass(frozen=True)
class LayerCount:
    """One counted leaf layer."""

    path: str          # e.g. "cell_3/block0_left/sep0/depthwise"
    kind: str          # class name
    params: int        # weights of this layer (kernel + bias), no BN
    madds: int
    output_shape: tuple


@dataclasses.dataclass(frozen=True)
class CountReport:
    """Counts for a model at one input size."""

    input_size: tuple
    params: int                 # trainable weights of the whole model
    non_trainable_params: int
    madds: int                  # over the counted layers
    layers: tuple               # LayerCount per counted call

    def subtotal(self, prefix, exclude=()):
        """(params, madds) of counted layers under ``prefix/`` minus ``exclude`` prefixes.

        Only conv/dense weights are summed (no BN): the basis of DPC Table 1.
        """
        params = madds = 0
        for rec in self.layers:
            if not rec.path.startswith(prefix + "/"):
                continue
            if any(rec.path.startswith(f"{prefix}/{e}") for e in exclude):
                continue
            params += rec.params
            madds += rec.madds
        return params, madds


def _weights_size(weights):
    return int(sum(math.prod(w.shape) for w in weights))


def _conv_madds(layer, in_shape, out_shape):
    positions = math.prod(out_shape[:-1])  # batch included
    if isinstance(layer, keras.layers.SeparableConv2D):
        k = math.prod(layer.kernel_size)
        c_in = in_shape[-1]
        return positions * (k * c_in * layer.depth_multiplier
                            + c_in * layer.depth_multiplier * out_shape[-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return positions * math.prod(layer.kernel_size) * out_shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return positions * in_shape[-1] * out_shape[-1]
    groups = getattr(layer, "groups", 1)
    return positions * math.prod(layer.kernel_size) * (in_shape[-1] // groups) * out_shape[-1]


_COUNTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
            keras.layers.SeparableConv2D, keras.layers.Dense)


def _leaf_layers(layer, prefix=""):
    """(path, layer) for every counted leaf under ``layer`` (depth-first)."""
    for child in flatten_layers(layer, recursive=False):
        path = f"{prefix}{child.name}"
        if isinstance(child, _COUNTED):
            yield path, child
        else:
            yield from _leaf_layers(child, path + "/")


def _trace_shapes(model, shape):
    """Runs ``model`` on a symbolic input of ``shape`` without computing anything."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        fn = tf.function(lambda x: model(x, training=False), autograph=False)
        fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    elif backend == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        jax.eval_shape(lambda x: model(x, training=False),
                       jax.ShapeDtypeStruct(shape, "float32"))
    else:
        raise NotImplementedError(f"counting is not implemented for backend {backend!r}")


def count(model, input_size, batch_size=1, channels=3):
    """Counts params and Multiply-Adds of ``model`` for inputs ``[batch, H, W, channels]``.

    Args:
      model: a built ``keras.Model`` taking one NHWC image tensor.
      input_size: ``(H, W)``.
    Returns:
      a :class:`CountReport`; ``madds`` is for the whole batch.
    """
    records = []
    leaves = list(_leaf_layers(model))

    def recorder(path, layer, original_call):
        def call(inputs, *args, **kwargs):
            out = original_call(inputs, *args, **kwargs)
            in_shape = tuple(int(d) for d in inputs.shape)
            out_shape = tuple(int(d) for d in out.shape)
            records.append(LayerCount(path, type(layer).__name__,
                                      _weights_size(layer.weights),
                                      int(_conv_madds(layer, in_shape, out_shape)),
                                      out_shape))
            return out
        return call

    originals = []
    for path, layer in leaves:
        originals.append((layer, layer.__dict__.get("call")))
        object.__setattr__(layer, "call", recorder(path, layer, layer.call))
    try:
        _trace_shapes(model, (batch_size, *input_size, channels))
    finally:
        for layer, original in originals:
            if original is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", original)
    trainable = _weights_size(model.trainable_weights)
    non_trainable = _weights_size(model.non_trainable_weights)
    return CountReport(tuple(input_size), trainable, non_trainable,
                       int(sum(r.madds for r in records)), tuple(records))


def describe(model, input_size, context_layer="context", context_exclude=("projection",)):
    """A JSON-ready summary: params, madds and, with a context module, its counts.

    Context-module figures use the basis of DPC Table 1 (SPEC §3.4): the module's
    branches without the concat projection and without batch norm.
    """
    report = count(model, input_size)
    out = {"name": model.name, "input_size": list(input_size), "params": report.params,
           "non_trainable_params": report.non_trainable_params, "madds": report.madds}
    names = {layer.name for layer in model.layers}
    if context_layer in names:
        params, madds = report.subtotal(context_layer, context_exclude)
        out["context_params"] = params
        out["context_madds"] = madds
    return out


def format_count(value):
    """12345678 -> '12.35M'; 3.3e11 -> '330.00B'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))


__all__ = ["count", "describe", "CountReport", "LayerCount", "format_count"]
