"""Keras layers of nasseg_tf (``keras.ops`` only: they run on any Keras backend)."""

from nasseg_tf.layers.cell import DerivedCell
from nasseg_tf.layers.common import ConvBN
from nasseg_tf.layers.dpc import DensePredictionCell, PyramidPooling
from nasseg_tf.layers.heads import ASPP, DeepLabV3PlusDecoder, ImagePooling
from nasseg_tf.layers.ops import (AtrousConvOp, PoolOp, SepConvOp, SkipOp, ZeroOp,
                                  build_op, known_ops, register_op)
from nasseg_tf.layers.resize import ResizeLike, resize_bilinear
