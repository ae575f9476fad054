"""Segmentation heads: ASPP (DeepLabv3) and the DeepLabv3+ decoder.

For the Auto-DeepLab zoo models the official configuration that reproduces the
paper's parameter counts uses **regular** 3×3 convs in both (SPEC §2.5); separable
convs (BN + ReLU after the depthwise and the pointwise step, DeepLabv3+ style) are an
option. All convs are conv → BN → ReLU without bias.

Numerics: every layer here takes ``align_corners`` (the bilinear-resizing convention,
:mod:`nasseg_tf.layers.resize`) and its batch-norm settings; the defaults (half-pixel
centres, epsilon 1e-3, global image pooling) are what configs saved before these options
existed mean. The official TF1 graph uses ``align_corners=True``, epsilon 1e-5 and a
fixed image-pooling window from the crop in these heads (SPEC §7); the zoo passes them.
"""

import keras
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.dpc import PyramidPooling
from nasseg_tf.layers.resize import resize_bilinear, spatial_size


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ImagePooling(PyramidPooling):
    """ASPP's image-level feature (DeepLabv3 §3.3): average pool → 1×1 conv → BN → ReLU
    → bilinear resize back to the input size.

    A :class:`~nasseg_tf.layers.dpc.PyramidPooling` with grid 1×1 (one kernel formula
    for both): without ``pool_crop_size`` the pool is a global mean, broadcast back
    (any, also dynamic, input size); with it, the official graph's fixed window
    ``(crop − 1) // output_stride + 1`` per axis, VALID, stride 1, then a resize back
    with ``align_corners`` — a global mean only when the input is the crop (SPEC §7;
    official ``model.py``, ``image_pooling`` scope). Configs saved before these options
    existed mean global pooling.

    With a per-replica training batch of 1, the BN of this branch sees a single value
    per channel: nothing crashes (a known failure of PyTorch ports), but the branch
    output is then its BN offset and its conv gets no gradient. Train with batch ≥ 2
    per replica, synchronised BN, or ``use_bn=False`` (the conv then gets a bias).

    Args:
      filters: output channels.
      use_bn: batch norm after the 1×1 conv.
      bn_momentum, bn_epsilon: batch-norm settings.
      output_stride: the features' output stride (for ``pool_crop_size``).
      pool_crop_size: ``(H, W)`` of the training crop, or None for global pooling.
      align_corners: resizing convention of the resize back (see
        :func:`~nasseg_tf.layers.resize.resize_bilinear`).
    """

    def __init__(self, filters, use_bn=True, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, output_stride=16, pool_crop_size=None,
                 align_corners=False, **kwargs):
        super().__init__(filters, (1, 1), output_stride, pool_crop_size,
                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                         align_corners=align_corners, use_bn=use_bn, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["grid_size"]  # always 1×1
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ASPP(keras.layers.Layer):
    """Atrous Spatial Pyramid Pooling (Chen et al. 2017, DeepLabv3 §3.3).

    Branches: a 1×1 conv, one 3×3 atrous conv per rate, optional image pooling; their
    concat is projected by a 1×1 conv (``projection``) and dropped out in training.

    Args:
      filters: channels of every branch and of the output (256 in DeepLab).
      atrous_rates: rates of the 3×3 branches (DeepLab at OS 8: 12, 24, 36; at OS 16:
        6, 12, 18). The Auto-DeepLab paper does not state them.
      separable: depthwise-separable 3×3 branches instead of regular convs.
      image_pooling: add the image-level pooling branch.
      dropout_rate: dropout on the projection output during training (DeepLab: 0.1).
      bn_momentum, bn_epsilon: batch-norm settings (official: 0.9997, 1e-5).
      output_stride, pool_crop_size: the image pooling's window (see
        :class:`ImagePooling`; None: global pooling).
      align_corners: the image pooling's resizing convention.

    No atrous rates and image pooling give the official MobileNet-v2 DeepLabv3 head
    (``aspp0`` + image pooling, a 512 → 256 projection).
    """

    def __init__(self, filters=256, atrous_rates=(12, 24, 36), separable=False,
                 image_pooling=True, dropout_rate=0.1, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, output_stride=16, pool_crop_size=None,
                 align_corners=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.separable = bool(separable)
        self.image_pooling = bool(image_pooling)
        self.dropout_rate = float(dropout_rate)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.output_stride = int(output_stride)
        self.pool_crop_size = (None if pool_crop_size is None
                               else tuple(int(s) for s in pool_crop_size))
        self.align_corners = bool(align_corners)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        self.branches = [ConvBN(self.filters, 1, name="conv_1x1", **bn)]
        for rate in self.atrous_rates:
            self.branches.append(ConvBN(self.filters, 3, dilation_rate=rate,
                                        separable=self.separable,
                                        depthwise_bn=self.separable,
                                        name=f"atrous_{rate}", **bn))
        if self.image_pooling:
            self.branches.append(ImagePooling(
                self.filters, output_stride=self.output_stride,
                pool_crop_size=self.pool_crop_size, align_corners=self.align_corners,
                name="image_pooling", **bn))
        self.projection = ConvBN(self.filters, 1, name="projection", **bn)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")

    def build(self, input_shape):
        for branch in self.branches:
            branch.build(tuple(input_shape))
        self.projection.build(tuple(input_shape[:3]) + (self.filters * len(self.branches),))

    def call(self, x, training=None):
        y = ops.concatenate([b(x, training=training) for b in self.branches], axis=-1)
        y = self.projection(y, training=training)
        return self.dropout(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, atrous_rates=list(self.atrous_rates),
                      separable=self.separable, image_pooling=self.image_pooling,
                      dropout_rate=self.dropout_rate, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon, output_stride=self.output_stride,
                      pool_crop_size=(None if self.pool_crop_size is None
                                      else list(self.pool_crop_size)),
                      align_corners=self.align_corners)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class DeepLabV3PlusDecoder(keras.layers.Layer):
    """The DeepLabv3+ decoder (Chen et al. 2018, §3.1).

    The low-level feature is projected by a 1×1 conv to ``low_level_filters``; the
    encoder output is upsampled bilinearly to its size; both are concatenated and
    refined by ``num_convs`` 3×3 convs of ``filters``.

    Args:
      filters: channels of the refining convs (256).
      low_level_filters: channels of the low-level projection (48).
      num_convs: number of refining 3×3 convs (2).
      separable: separable refining convs (official ``decoder_conv<i>_{depthwise,
        pointwise}``) instead of regular ones.
      bn_momentum, bn_epsilon: batch-norm settings (official: 0.9997, 1e-5).
      align_corners: resizing convention of the upsampling (official: True).

    Call: ``decoder([encoder_features, low_level_features], training)``.
    """

    def __init__(self, filters=256, low_level_filters=48, num_convs=2, separable=False,
                 bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, align_corners=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.low_level_filters = int(low_level_filters)
        self.num_convs = int(num_convs)
        self.separable = bool(separable)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.align_corners = bool(align_corners)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        self.low_level_projection = ConvBN(self.low_level_filters, 1,
                                           name="low_level_projection", **bn)
        self.convs = [ConvBN(self.filters, 3, separable=self.separable,
                             depthwise_bn=self.separable, name=f"conv{i}", **bn)
                      for i in range(self.num_convs)]

    def build(self, input_shape):
        high_shape, low_shape = (tuple(s) for s in input_shape)
        self.low_level_projection.build(low_shape)
        shape = low_shape[:3] + (high_shape[-1] + self.low_level_filters,)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, inputs, training=None):
        high, low = inputs
        low = self.low_level_projection(low, training=training)
        high = resize_bilinear(high, spatial_size(low), self.align_corners)
        x = ops.concatenate([high, low], axis=-1)
        for conv in self.convs:
            x = conv(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        low_shape = input_shape[1]
        return tuple(low_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, low_level_filters=self.low_level_filters,
                      num_convs=self.num_convs, separable=self.separable,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      align_corners=self.align_corners)
        return config
