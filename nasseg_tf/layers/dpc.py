"""The Dense Prediction Cell as a Keras layer (Chen et al. 2018, §3; SPEC §3.1–3.2).

``DensePredictionCell(cell)`` builds the branches of a :class:`DPCCell` (official JSON,
a published name such as ``"dpc_top1_cityscapes"``, or a path):

* ``conv`` kernel 1: 1×1 conv → BN → ReLU;
* ``conv`` kernel 3: 3×3 atrous *separable* conv with rate ``[r_h, r_w]`` × ``16 /
  output_stride`` — depthwise → BN → ReLU → pointwise → BN → ReLU;
* ``pyramid_pooling`` grid ``[g_h, g_w]``: average pooling with stride 1 and VALID
  padding, kernel ``int((pool_crop - 1) / (OS·g) + 1)`` per axis, then 1×1 conv → BN →
  ReLU, then bilinear resize back to the feature size (grid 1×1 = image pooling; ASPP's
  :class:`~nasseg_tf.layers.heads.ImagePooling` is this layer with that grid).

All convs have ``filters`` (256) outputs. The branch outputs are concatenated, dropped
out (keep 0.9) and projected by a 1×1 conv → BN → ReLU (``projection``).

Choices where the papers are silent, each a parameter:

* ``pool_crop_size=None`` (default) derives the pooling kernel from the *actual* feature
  size ``f``: ``(f - 1) // g + 1``. At the training crop this equals the official
  formula (``f = (crop - 1) / OS + 1``); on other sizes (serving whole frames, dynamic
  sizes in a SavedModel) the windows keep covering 1/g of the map, where a fixed kernel
  would not. Pass the official ``pool_crop_size`` to fix the kernel as the release does.
  With dynamic spatial sizes the pooling runs as a box filter on an integral image
  (cumulative sums), so any size works; with static sizes it is ``average_pool``.
* Dropout on the concatenation, before the projection (``dropout_before_projection``;
  the issue text's order), rate 0.1.
* Bilinear resizing: ``align_corners=False`` (half-pixel centres) by default, so configs
  saved before the option existed keep their numerics; the official graph (and the zoo's
  DPC models) use ``align_corners=True`` (see :mod:`nasseg_tf.layers.resize`).
* Global pooling (no ``pool_crop_size``, grid 1×1) is a mean over the whole map,
  broadcast back: the same function as the pool-and-resize, cheaper, for any size.
"""

import keras
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.resize import resize_bilinear, spatial_size
from nasseg_tf.search_space.dpc import load_dpc_cell


def _box_mean_valid(x, axis, k):
    """Mean over windows of ``k`` along ``axis`` (VALID, stride 1); ``k`` may be a tensor."""
    shape = ops.shape(x)
    csum = ops.cumsum(x, axis=axis)
    pad = [(0, 0)] * 4
    pad[axis] = (1, 0)
    csum = ops.pad(csum, pad)
    out_len = shape[axis] - k + 1
    start_hi = [0, 0, 0, 0]
    start_hi[axis] = k
    size = list(shape)
    size[axis] = out_len
    upper = ops.slice(csum, start_hi, size)
    lower = ops.slice(csum, [0, 0, 0, 0], size)
    return (upper - lower) / ops.cast(k, x.dtype)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class PyramidPooling(keras.layers.Layer):
    """Average pooling on a ``grid_size`` grid → 1×1 conv → BN → ReLU → resize back.

    Args:
      filters: output channels.
      grid_size: ``(g_h, g_w)``.
      output_stride: the features' output stride (for ``pool_crop_size``).
      pool_crop_size: ``(H, W)`` crop the official kernel formula uses, or None to
        derive the kernel from the feature size (see the module docstring). A fixed
        window larger than the feature map fails, as in the official graph.
      bn_momentum, bn_epsilon: batch-norm settings of the 1×1 conv.
      align_corners: resizing convention of the resize back (False: half-pixel
        centres, also for configs saved without the key; True: the official graph).
      use_bn: batch norm after the 1×1 conv (without it the conv gets a bias).
    """

    def __init__(self, filters=256, grid_size=(1, 1), output_stride=16,
                 pool_crop_size=None, bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 align_corners=False, use_bn=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.grid_size = tuple(int(g) for g in grid_size)
        self.output_stride = int(output_stride)
        self.pool_crop_size = (None if pool_crop_size is None
                               else tuple(int(s) for s in pool_crop_size))
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.align_corners = bool(align_corners)
        self.use_bn = bool(use_bn)
        self.conv = ConvBN(self.filters, 1, use_bn=self.use_bn, name="conv",
                           bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)

    @property
    def is_global(self):
        """Whether the pooling is a mean over the whole map (whatever its size)."""
        return self.pool_crop_size is None and self.grid_size == (1, 1)

    def kernel_size(self, feature_size):
        """Pooling kernel per axis for a feature map of ``feature_size`` (ints or tensors)."""
        if self.pool_crop_size is not None:
            return tuple(int((c - 1) / (self.output_stride * g) + 1)
                         for c, g in zip(self.pool_crop_size, self.grid_size))
        return tuple((f - 1) // g + 1 for f, g in zip(feature_size, self.grid_size))

    def build(self, input_shape):
        self.conv.build((input_shape[0], None, None, input_shape[-1]))

    def call(self, x, training=None):
        if self.is_global:  # a 1×1 map: resizing it back is broadcasting
            y = self.conv(ops.mean(x, axis=(1, 2), keepdims=True), training=training)
            shape = ops.shape(x)
            return ops.broadcast_to(y, (shape[0], shape[1], shape[2], self.filters))
        size = spatial_size(x)
        kernel = self.kernel_size(size)
        if all(isinstance(k, int) for k in kernel):
            pooled = ops.average_pool(x, kernel, strides=1, padding="valid")
        else:
            pooled = _box_mean_valid(_box_mean_valid(x, 1, kernel[0]), 2, kernel[1])
        y = self.conv(pooled, training=training)
        return resize_bilinear(y, size, self.align_corners)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, grid_size=list(self.grid_size),
                      output_stride=self.output_stride,
                      pool_crop_size=(None if self.pool_crop_size is None
                                      else list(self.pool_crop_size)),
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      align_corners=self.align_corners, use_bn=self.use_bn)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class DensePredictionCell(keras.layers.Layer):
    """A Dense Prediction Cell context module (see the module docstring).

    Args:
      cell: a :class:`DPCCell`, its JSON config (list of branch objects) or a
        published name (``"dpc_top1_cityscapes"``) — not a file path: load files with
        :func:`~nasseg_tf.search_space.dpc.load_dpc_cell` (the zoo does).
      filters: channels of every branch and of the projection (256).
      output_stride: the backbone's output stride; atrous rates are multiplied by
        ``16 / output_stride`` (must divide 16).
      pool_crop_size: see :class:`PyramidPooling`.
      dropout_rate: dropout on the concatenation in training (0.1 = keep 0.9).
      dropout_before_projection: dropout on the concat (True) or on the projection's
        output (False).
      bn_momentum, bn_epsilon: batch-norm settings of every conv (official: 0.9997,
        1e-5).
      align_corners: resizing convention of the pyramid-pooling branches (see
        :class:`PyramidPooling`).
    """

    def __init__(self, cell="dpc_top1_cityscapes", filters=256, output_stride=16,
                 pool_crop_size=None, dropout_rate=0.1, dropout_before_projection=True,
                 bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, align_corners=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.cell = load_dpc_cell(cell, allow_files=False)
        self.filters = int(filters)
        self.output_stride = int(output_stride)
        if self.output_stride < 1 or 16 % self.output_stride:
            raise ValueError(f"DensePredictionCell: output_stride must divide 16 (4, 8, "
                             f"16), got {output_stride}")
        self.pool_crop_size = (None if pool_crop_size is None
                               else tuple(int(s) for s in pool_crop_size))
        self.dropout_rate = float(dropout_rate)
        self.dropout_before_projection = bool(dropout_before_projection)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.align_corners = bool(align_corners)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        multiplier = 16 // self.output_stride
        self.branches = []
        for i, branch in enumerate(self.cell.branches):
            name = f"branch_{i}"
            if branch.op == "pyramid_pooling":
                layer = PyramidPooling(self.filters, branch.grid_size, self.output_stride,
                                       self.pool_crop_size, name=name,
                                       align_corners=self.align_corners, **bn)
            elif branch.kernel == 1:
                layer = ConvBN(self.filters, 1, name=name, **bn)
            else:
                rate = tuple(r * multiplier for r in branch.rate)
                layer = ConvBN(self.filters, 3, dilation_rate=rate, separable=True,
                               depthwise_bn=True, name=name, **bn)
            self.branches.append(layer)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.projection = ConvBN(self.filters, 1, name="projection", **bn)

    def build(self, input_shape):
        shape = tuple(input_shape)
        branch_shape = shape[:3] + (self.filters,)
        for branch, layer in zip(self.cell.branches, self.branches):
            layer.build(shape if branch.input < 0 else branch_shape)
        self.projection.build(shape[:3] + (self.filters * len(self.branches),))

    def call(self, x, training=None):
        outputs = []
        for branch, layer in zip(self.cell.branches, self.branches):
            source = x if branch.input < 0 else outputs[branch.input]
            outputs.append(layer(source, training=training))
        y = ops.concatenate(outputs, axis=-1)
        if self.dropout_before_projection:
            y = self.dropout(y, training=training)
        y = self.projection(y, training=training)
        if not self.dropout_before_projection:
            y = self.dropout(y, training=training)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(cell=self.cell.to_config(), filters=self.filters,
                      output_stride=self.output_stride,
                      pool_crop_size=(None if self.pool_crop_size is None
                                      else list(self.pool_crop_size)),
                      dropout_rate=self.dropout_rate,
                      dropout_before_projection=self.dropout_before_projection,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      align_corners=self.align_corners)
        return config
