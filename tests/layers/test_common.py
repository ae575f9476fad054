"""ConvBN and strided padding."""

import numpy as np
import pytest

from layer_checks import check_layer
from nasseg_tf.layers.common import ConvBN, pad_for_stride


@pytest.mark.parametrize("kwargs,expected", [
    (dict(filters=5, kernel_size=3), (2, 9, 10, 5)),
    (dict(filters=5, kernel_size=3, strides=2), (2, 5, 5, 5)),
    (dict(filters=5, kernel_size=3, dilation_rate=(3, 2), separable=True,
          depthwise_bn=True), (2, 9, 10, 5)),
    (dict(filters=5, kernel_size=1, use_bn=False, post_activation=False), (2, 9, 10, 5)),
])
def test_conv_bn_passes_layer_checks(kwargs, expected):
    check_layer(lambda: ConvBN(**kwargs), (2, 9, 10, 4), expected)


def test_strided_conv_pads_symmetrically_like_conv2d_same():
    x = np.arange(6 * 6, dtype="float32").reshape(1, 6, 6, 1)
    padded = np.asarray(pad_for_stride(x, 3))
    assert padded.shape == (1, 8, 8, 1)
    assert padded[0, 0].sum() == 0 and padded[0, -1].sum() == 0  # one row each side


def test_strides_with_dilation_are_rejected():
    with pytest.raises(ValueError, match="dilation"):
        ConvBN(4, 3, strides=2, dilation_rate=2)
