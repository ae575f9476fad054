"""Segmentation heads: ASPP (DeepLabv3) and the DeepLabv3+ decoder.

For the Auto-DeepLab zoo models the official configuration that reproduces the
paper's parameter counts uses **regular** 3×3 convs in both (SPEC §2.5); separable
convs (BN + ReLU after the depthwise and the pointwise step, DeepLabv3+ style) are an
option. All convs are conv → BN → ReLU without bias.
"""

import keras
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.resize import resize_bilinear, spatial_size


@keras.saving.register_keras_serializable(package="nasseg_tf")
class ImagePooling(keras.layers.Layer):
    """Global average pool → 1×1 conv → BN → ReLU, broadcast back to the input size.

    Broadcasting a 1×1 map equals bilinear upsampling of it, and works for any
    (dynamic) input size.

    With a per-replica training batch of 1, the BN of this branch sees a single value
    per channel: nothing crashes (a known failure of PyTorch ports), but the branch
    output is then its BN offset and its conv gets no gradient. Train with batch ≥ 2
    per replica, synchronised BN, or ``use_bn=False`` (the conv then gets a bias).
    """

    def __init__(self, filters, use_bn=True, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.use_bn = bool(use_bn)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.conv = ConvBN(self.filters, 1, use_bn=self.use_bn, name="conv",
                           bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)

    def build(self, input_shape):
        self.conv.build((input_shape[0], 1, 1, input_shape[-1]))

    def call(self, x, training=None):
        pooled = ops.mean(x, axis=(1, 2), keepdims=True)
        y = self.conv(pooled, training=training)
        shape = ops.shape(x)
        return ops.broadcast_to(y, (shape[0], shape[1], shape[2], self.filters))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, use_bn=self.use_bn,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
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
    """

    def __init__(self, filters=256, atrous_rates=(12, 24, 36), separable=False,
                 image_pooling=True, dropout_rate=0.1, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.separable = bool(separable)
        self.image_pooling = bool(image_pooling)
        self.dropout_rate = float(dropout_rate)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        self.branches = [ConvBN(self.filters, 1, name="conv_1x1", **bn)]
        for rate in self.atrous_rates:
            self.branches.append(ConvBN(self.filters, 3, dilation_rate=rate,
                                        separable=self.separable,
                                        depthwise_bn=self.separable,
                                        name=f"atrous_{rate}", **bn))
        if self.image_pooling:
            self.branches.append(ImagePooling(self.filters, name="image_pooling", **bn))
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
                      bn_epsilon=self.bn_epsilon)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class DeepLabV3PlusDecoder(keras.layers.Layer):
    """The DeepLabv3+ decoder (Chen et al. 2018, §3.1).

    The low-level feature is projected by a 1×1 conv to ``low_level_filters``; the
    encoder output is upsampled bilinearly to its size; both are concatenated and
    refined by ``num_convs`` 3×3 convs of ``filters``.

    Call: ``decoder([encoder_features, low_level_features], training)``.
    """

    def __init__(self, filters=256, low_level_filters=48, num_convs=2, separable=False,
                 bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.low_level_filters = int(low_level_filters)
        self.num_convs = int(num_convs)
        self.separable = bool(separable)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
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
        high = resize_bilinear(high, spatial_size(low))
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
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config
