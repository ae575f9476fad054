"""Candidate operations of the Auto-DeepLab cell, as Keras layers, and their registry.

Semantics are those of the official DeepLab release's derived models (SPEC §2.5), so a
searched cell retrains with exactly the ops it was searched with:

* ``sep_conv_kxk``  — two × [ReLU → separable k×k conv → BN]; stride only in the first.
* ``atrous_conv_kxk`` — ReLU → regular (not separable) k×k conv of rate 2 → BN; with
  stride 2: bilinear resize to ceil(size/2), then a rate-1 conv (as the official code).
* ``avg_pool_3x3`` / ``max_pool_3x3`` — 3×3 pool (stride as given, 'same'), then
  ReLU → 1×1 conv → BN only when the input channels differ from ``filters``.
* ``skip_connect`` — identity; with stride 2 or a channel change: ReLU → 1×1 conv
  (stride 2) → BN (the official release's reduction of an identity edge).
* ``none`` — zeros of the output shape (no weights).

Every op maps ``[N, H, W, C] -> [N, ceil(H/s), ceil(W/s), filters]``.
"""

import keras
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.resize import downsampled_size, resize_bilinear, spatial_size
from nasseg_tf.search_space.autodeeplab import OP_TABLE

_OP_REGISTRY = {}


def register_op(name):
    """Class decorator: registers an op builder under ``name``."""

    def wrap(builder):
        if name in _OP_REGISTRY:
            raise ValueError(f"op {name!r} is already registered")
        _OP_REGISTRY[name] = builder
        return builder

    return wrap


def known_ops():
    """Names of the registered candidate ops."""
    return tuple(sorted(_OP_REGISTRY))


def build_op(op_name, filters, stride=1, **kwargs):
    """Builds candidate op ``op_name`` producing ``filters`` channels at ``stride``.

    Extra keyword arguments (``name``, BN settings) go to the layer.
    """
    try:
        builder = _OP_REGISTRY[op_name]
    except KeyError:
        raise ValueError(
            f"unknown op {op_name!r}; known ops: {', '.join(known_ops())}"
        ) from None
    return builder(filters=filters, stride=stride, **kwargs)


def _out_shape(input_shape, filters, stride):
    n, h, w, _ = input_shape
    if stride > 1:
        h = None if h is None else -(-h // stride)
        w = None if w is None else -(-w // stride)
    return (n, h, w, filters)


class _Op(keras.layers.Layer):
    """Base: ``filters`` and ``stride`` plus BN settings, a complete config."""

    def __init__(self, filters, stride=1, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        if int(stride) not in (1, 2):
            raise ValueError(f"{type(self).__name__}: stride must be 1 or 2, got {stride}")
        self.filters = int(filters)
        self.stride = int(stride)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)

    def compute_output_shape(self, input_shape):
        return _out_shape(input_shape, self.filters, self.stride)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, stride=self.stride,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config

    def _bn_kwargs(self):
        return dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class SepConvOp(_Op):
    """``repeats`` × [ReLU → separable k×k → BN]; the stride applies to the first only."""

    def __init__(self, filters, kernel_size=3, stride=1, repeats=2, **kwargs):
        super().__init__(filters, stride, **kwargs)
        self.kernel_size = int(kernel_size)
        self.repeats = int(repeats)
        self.convs = [
            ConvBN(self.filters, self.kernel_size, strides=self.stride if i == 0 else 1,
                   separable=True, pre_activation=True, post_activation=False,
                   name=f"sep{i}", **self._bn_kwargs())
            for i in range(self.repeats)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, x, training=None):
        for conv in self.convs:
            x = conv(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, repeats=self.repeats)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class AtrousConvOp(_Op):
    """ReLU → regular k×k conv with rate ``rate`` → BN (official ``atrous_kxk``).

    With stride 2 the input is first resized bilinearly to ceil(size/2) and the conv
    runs with rate 1, as in the official release; ``align_corners`` is that resize's
    convention (the official graph's is True; False, half-pixel centres, is what layers
    saved without the option computed).
    """

    def __init__(self, filters, kernel_size=3, stride=1, rate=2, align_corners=False,
                 **kwargs):
        super().__init__(filters, stride, **kwargs)
        self.kernel_size = int(kernel_size)
        self.rate = int(rate)
        self.align_corners = bool(align_corners)
        self.conv = ConvBN(
            self.filters, self.kernel_size,
            dilation_rate=1 if self.stride > 1 else self.rate,
            pre_activation=True, post_activation=False, name="conv",
            **self._bn_kwargs())

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))

    def call(self, x, training=None):
        if self.stride > 1:
            x = ops.relu(x)
            x = resize_bilinear(x, downsampled_size(spatial_size(x), self.stride),
                                align_corners=self.align_corners)
        return self.conv(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, rate=self.rate,
                      align_corners=self.align_corners)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class DilatedSepConvOp(_Op):
    """ReLU → depthwise k×k conv of rate ``rate`` → pointwise 1×1 → BN (DARTS' ``dil_conv``).

    A search-only substitute for ``atrous_conv_kxk`` (``Supernet.atrous_op =
    'dilated_separable'``): about k²·C fewer weights and Multiply-Adds per pixel than
    the regular atrous conv. Not a primitive of the op table — the derived models keep
    the official regular atrous convs. Stride 1 only.
    """

    def __init__(self, filters, kernel_size=3, stride=1, rate=2, **kwargs):
        super().__init__(filters, stride, **kwargs)
        if self.stride != 1:
            raise ValueError(f"DilatedSepConvOp: stride must be 1, got {stride}")
        self.kernel_size = int(kernel_size)
        self.rate = int(rate)
        self.conv = ConvBN(self.filters, self.kernel_size, dilation_rate=self.rate,
                           separable=True, pre_activation=True, post_activation=False,
                           name="conv", **self._bn_kwargs())

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))

    def call(self, x, training=None):
        return self.conv(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, rate=self.rate)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class PoolOp(_Op):
    """3×3 average or max pool, then ReLU → 1×1 conv → BN if the channels change."""

    def __init__(self, filters, pool_type="avg", stride=1, pool_size=3, **kwargs):
        super().__init__(filters, stride, **kwargs)
        if pool_type not in ("avg", "max"):
            raise ValueError(f"PoolOp: pool_type must be 'avg' or 'max', got {pool_type!r}")
        self.pool_type = pool_type
        self.pool_size = int(pool_size)
        pool_cls = (keras.layers.AveragePooling2D if pool_type == "avg"
                    else keras.layers.MaxPooling2D)
        self.pool = pool_cls(self.pool_size, strides=self.stride, padding="same",
                             name="pool")
        self.project = None

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            self.project = ConvBN(self.filters, 1, pre_activation=True,
                                  post_activation=False, name="project",
                                  **self._bn_kwargs())
            self.project.build(tuple(input_shape))

    def call(self, x, training=None):
        x = self.pool(x)
        if self.project is not None:
            x = self.project(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(pool_type=self.pool_type, pool_size=self.pool_size)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class SkipOp(_Op):
    """Identity; ReLU → 1×1 conv (stride) → BN when the stride or channels change."""

    def __init__(self, filters, stride=1, **kwargs):
        super().__init__(filters, stride, **kwargs)
        self.project = None

    def build(self, input_shape):
        if self.stride > 1 or input_shape[-1] != self.filters:
            self.project = ConvBN(self.filters, 1, strides=self.stride,
                                  pre_activation=True, post_activation=False,
                                  name="project", **self._bn_kwargs())
            self.project.build(tuple(input_shape))

    def call(self, x, training=None):
        if self.project is None:
            return x
        return self.project(x, training=training)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ZeroOp(_Op):
    """The ``none`` op: zeros of shape ``[N, ceil(H/s), ceil(W/s), filters]``."""

    def call(self, x, training=None):
        x = x[:, :: self.stride, :: self.stride, :1]
        return ops.tile(ops.zeros_like(x), (1, 1, 1, self.filters))


_BUILDERS = {
    "separable": lambda spec: lambda filters, stride=1, **kw: SepConvOp(
        filters, spec.kernel, stride, **kw),
    "atrous": lambda spec: lambda filters, stride=1, **kw: AtrousConvOp(
        filters, spec.kernel, stride, rate=spec.rate, **kw),
    "pool": lambda spec: lambda filters, stride=1, **kw: PoolOp(
        filters, spec.pool, stride, **kw),
    "skip": lambda spec: SkipOp,
    "zero": lambda spec: ZeroOp,
}

for _spec in OP_TABLE:  # the Auto-DeepLab op table (nasseg_tf.search_space.autodeeplab)
    register_op(_spec.name)(_BUILDERS[_spec.kind](_spec))
