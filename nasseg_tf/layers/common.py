"""Small shared building blocks: batch-norm defaults, padding, conv + BN (+ ReLU).

Defaults follow the official DeepLab release for Auto-DeepLab (SPEC §2.5): batch norm
decay 0.9997 and epsilon 1e-3, convolutions without bias (a BN follows every conv).
Kernel initialiser: He normal (the papers train from scratch and do not fix one).

The official graph's batch-norm settings per part (SPEC §7, "Numerics of the official
graph") are the constants below: epsilon 1e-3 in the backbones (Xception, MobileNet-v2,
hnasnet) and :data:`HEAD_BN_EPSILON` = 1e-5 in ASPP, DPC and the decoder (DeepLab's
``model.py``); decay 0.9997 except slim MobileNet-v2's 0.997. Layers default to
``BN_EPSILON`` everywhere (what configs saved without per-part settings mean); the zoo
passes the per-part values.
"""

import contextlib

import keras
from keras import ops

BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-3
#: Batch-norm epsilon of the official ASPP, DPC and decoder.
HEAD_BN_EPSILON = 1e-5
#: Batch-norm decay of slim's MobileNet-v2 in the official DeepLab.
MOBILENET_V2_BN_MOMENTUM = 0.997
KERNEL_INITIALIZER = "he_normal"


_SYNC_BATCH_NORM = [False]


@contextlib.contextmanager
def synchronized_batch_norm(enabled=True):
    """Batch norms *created* inside this block use cross-replica statistics (sync BN).

    Under a ``tf.distribute`` strategy each batch norm then normalises with the mean
    and variance of the global batch (an all-reduce per batch norm) instead of its
    replica's share — what small per-replica batches (e.g. 2 crops per GPU) need.
    Without a strategy it changes nothing. TensorFlow backend only (Keras'
    ``BatchNormalization(synchronized=True)``). The training and search jobs enter it
    when ``Training.sync_batch_norm`` / ``Search.sync_batch_norm`` is set; a model
    rebuilt from its config outside the block (e.g. loaded for inference) has plain
    batch norms, which compute the same function at inference.
    """
    enabled = bool(enabled)
    if enabled and keras.backend.backend() != "tensorflow":
        raise ValueError("synchronized batch norm needs the TensorFlow backend "
                         f"(current: {keras.backend.backend()})")
    previous = _SYNC_BATCH_NORM[0]
    _SYNC_BATCH_NORM[0] = enabled
    try:
        yield
    finally:
        _SYNC_BATCH_NORM[0] = previous


def sync_batch_norm_enabled():
    """Whether batch norms created now are synchronized (see above)."""
    return _SYNC_BATCH_NORM[0]


def batch_norm(name, momentum=BN_MOMENTUM, epsilon=BN_EPSILON):
    """The package's BatchNormalization with DeepLab defaults (synchronized inside
    :func:`synchronized_batch_norm`)."""
    return keras.layers.BatchNormalization(
        momentum=momentum, epsilon=epsilon, synchronized=_SYNC_BATCH_NORM[0], name=name
    )


def pad_for_stride(x, kernel_size, rate=1):
    """Pads ``x`` symmetrically so a VALID strided conv acts like DeepLab's conv2d_same.

    The official Xception (``fixed_padding`` before ``conv2d_same`` and
    ``separable_conv2d_same`` with stride > 1) pads ``(k_eff − 1) // 2`` before and the
    rest after, ``k_eff = k + (k − 1)(rate − 1)``; TensorFlow's 'SAME' padding with
    stride 2 on an even size pads one pixel more at the end instead (on odd sizes, such
    as DeepLab's ``k·OS + 1`` crops, the two agree). Output size is ``ceil(size /
    stride)`` either way; alignment differs. At stride 1 the official graph uses 'SAME',
    which for the odd ``k_eff`` of a k×k atrous conv (k odd) is this same symmetric
    padding, so :class:`ConvBN` keeps Keras' ``padding="same"`` there.
    """
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    total = k_eff - 1
    beg = total // 2
    end = total - beg
    if total == 0:
        return x
    return ops.pad(x, ((0, 0), (beg, end), (beg, end), (0, 0)))


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ConvBN(keras.layers.Layer):
    """``[ReLU] -> conv (regular or separable, atrous, strided) -> BN -> [ReLU]``.

    Args:
      filters: output channels.
      kernel_size: square kernel size.
      strides: 1 or 2. Strided convs use DeepLab's explicit symmetric padding
        (:func:`pad_for_stride`); stride-1 convs 'same' padding, symmetric for odd
        kernels at any rate.
      dilation_rate: int or (rate_h, rate_w); asymmetric rates are allowed.
      separable: depthwise-separable instead of a regular conv.
      pre_activation: apply ReLU before the conv (NAS-cell style).
      post_activation: apply ReLU after the BN (DeepLab head style).
      depthwise_bn: for separable convs, put BN+ReLU after the depthwise step too
        (DPC and DeepLabv3+ style); otherwise one BN after the pointwise step.
      depthwise_activation: with ``depthwise_bn``, the ReLU after the depthwise BN
        (False: BN only, as in Xception's entry and middle flow).
      use_bn: BN after the conv (no BN means the conv gets a bias).
      bn_momentum, bn_epsilon: batch-norm settings.
    """

    def __init__(
        self,
        filters,
        kernel_size=1,
        strides=1,
        dilation_rate=1,
        separable=False,
        pre_activation=False,
        post_activation=True,
        depthwise_bn=False,
        depthwise_activation=True,
        use_bn=True,
        bn_momentum=BN_MOMENTUM,
        bn_epsilon=BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        if isinstance(dilation_rate, int):
            dilation_rate = (dilation_rate, dilation_rate)
        self.dilation_rate = tuple(int(r) for r in dilation_rate)
        if self.strides > 1 and self.dilation_rate != (1, 1):
            raise ValueError("ConvBN: strides > 1 with dilation_rate > 1 is not supported.")
        self.separable = bool(separable)
        self.pre_activation = bool(pre_activation)
        self.post_activation = bool(post_activation)
        self.depthwise_bn = bool(depthwise_bn)
        self.depthwise_activation = bool(depthwise_activation)
        self.use_bn = bool(use_bn)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        padding = "valid" if self.strides > 1 else "same"
        common = dict(
            strides=self.strides,
            padding=padding,
            dilation_rate=self.dilation_rate,
            use_bias=not self.use_bn,
        )
        if self.separable:
            self.depthwise = keras.layers.DepthwiseConv2D(
                self.kernel_size,
                depthwise_initializer=KERNEL_INITIALIZER,
                name="depthwise",
                **{**common, "use_bias": False},
            )
            self.depthwise_norm = (
                batch_norm("depthwise_bn", self.bn_momentum, self.bn_epsilon)
                if self.depthwise_bn
                else None
            )
            self.conv = keras.layers.Conv2D(
                self.filters,
                1,
                use_bias=not self.use_bn,
                kernel_initializer=KERNEL_INITIALIZER,
                name="pointwise",
            )
        else:
            self.depthwise = None
            self.depthwise_norm = None
            self.conv = keras.layers.Conv2D(
                self.filters,
                self.kernel_size,
                kernel_initializer=KERNEL_INITIALIZER,
                name="conv",
                **common,
            )
        self.norm = (
            batch_norm("bn", self.bn_momentum, self.bn_epsilon) if self.use_bn else None
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.depthwise is not None:
            self.depthwise.build(shape)
            mid = self.depthwise.compute_output_shape(shape)
            if self.depthwise_norm is not None:
                self.depthwise_norm.build(mid)
            self.conv.build(mid)
        else:
            self.conv.build(shape)
        if self.norm is not None:
            self.norm.build(self.conv.compute_output_shape(
                shape if self.depthwise is None else mid))

    def call(self, x, training=None):
        if self.pre_activation:
            x = ops.relu(x)
        if self.strides > 1:
            x = pad_for_stride(x, self.kernel_size)
        if self.depthwise is not None:
            x = self.depthwise(x)
            if self.depthwise_norm is not None:
                x = self.depthwise_norm(x, training=training)
                if self.depthwise_activation:
                    x = ops.relu(x)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        if self.post_activation:
            x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.strides > 1:
            h = None if h is None else -(-h // self.strides)
            w = None if w is None else -(-w // self.strides)
        return (n, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            dilation_rate=list(self.dilation_rate),
            separable=self.separable,
            pre_activation=self.pre_activation,
            post_activation=self.post_activation,
            depthwise_bn=self.depthwise_bn,
            depthwise_activation=self.depthwise_activation,
            use_bn=self.use_bn,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
        )
        return config
