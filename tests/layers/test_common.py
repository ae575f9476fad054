"""ConvBN and strided padding."""

import numpy as np
import pytest

from layer_checks import check_layer
from nasseg_tf.internals import flatten_layers
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


def _plain(conv_bn):
    """The ConvBN's weights as TF tensors: (depthwise kernel or None, conv kernel)."""
    depthwise = None if conv_bn.depthwise is None else conv_bn.depthwise.kernel
    return depthwise, conv_bn.conv.kernel


@pytest.mark.parametrize("size", [(8, 10), (9, 11), (8, 11)])
@pytest.mark.parametrize("separable", [False, True])
def test_strided_conv_equals_the_official_fixed_padding_and_valid_conv(size, separable):
    # Official Xception: fixed_padding (k_eff-1)//2 before, the rest after, then VALID.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    layer = ConvBN(5, 3, strides=2, separable=separable, use_bn=False,
                   post_activation=False)
    x = np.random.default_rng(0).normal(size=(2, *size, 4)).astype("float32")
    ours = np.asarray(layer(x))
    depthwise, kernel = _plain(layer)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    if separable:
        y = tf.nn.depthwise_conv2d(padded, depthwise, [1, 2, 2, 1], "VALID")
        expected = tf.nn.conv2d(y, kernel, 1, "VALID")
        same = tf.nn.conv2d(tf.nn.depthwise_conv2d(x, depthwise, [1, 2, 2, 1], "SAME"),
                            kernel, 1, "VALID")
    else:
        expected = tf.nn.conv2d(padded, kernel, 2, "VALID")
        same = tf.nn.conv2d(x, kernel, 2, "SAME")
    expected = expected + layer.conv.bias
    same = same + layer.conv.bias
    np.testing.assert_allclose(ours, expected.numpy(), rtol=0, atol=1e-5)
    # TF 'SAME' agrees only on odd sizes (DeepLab's k·OS + 1 crops).
    odd = size[0] % 2 and size[1] % 2
    assert np.allclose(ours, same.numpy(), atol=1e-5) == bool(odd)


@pytest.mark.parametrize("rate", [(2, 2), (3, 2)])
def test_atrous_conv_pads_symmetrically_like_the_official_graph(rate):
    # Stride 1: 'SAME' in the official graph = (k_eff-1)/2 on each side (k_eff odd).
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    layer = ConvBN(5, 3, dilation_rate=rate, separable=True, use_bn=False,
                   post_activation=False)
    x = np.random.default_rng(1).normal(size=(1, 8, 9, 4)).astype("float32")
    ours = np.asarray(layer(x))
    depthwise, kernel = _plain(layer)
    padded = tf.pad(x, [[0, 0], [rate[0]] * 2, [rate[1]] * 2, [0, 0]])
    y = tf.nn.depthwise_conv2d(padded, depthwise, [1, 1, 1, 1], "VALID", dilations=rate)
    expected = tf.nn.conv2d(y, kernel, 1, "VALID") + layer.conv.bias
    np.testing.assert_allclose(ours, expected.numpy(), rtol=0, atol=1e-5)


def test_strides_with_dilation_are_rejected():
    with pytest.raises(ValueError, match="dilation"):
        ConvBN(4, 3, strides=2, dilation_rate=2)


def _per_replica_outputs(make_layer, x, sync):
    """``make_layer()`` built under a 2-replica MirroredStrategy (sync BN or not), run in
    training mode with replica r fed ``x[r:r+1]``; returns the concatenated outputs."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from layer_checks import mirrored_strategy  # pylint: disable=import-outside-toplevel
    from nasseg_tf.layers.common import synchronized_batch_norm  # pylint: disable=import-outside-toplevel

    strategy = mirrored_strategy()
    with strategy.scope(), synchronized_batch_norm(sync):
        layer = make_layer()
        layer.build(x.shape)
    inputs = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group:][:1]))
    outputs = strategy.run(tf.function(lambda v: layer(v, training=True)), args=(inputs,))
    return np.concatenate([np.asarray(o) for o in
                           strategy.experimental_local_results(outputs)]), layer


@pytest.mark.parametrize("kind", ["keras", "search"])
def test_synchronized_batch_norm_uses_the_global_batch(kind):
    from nasseg_tf.layers.common import batch_norm  # pylint: disable=import-outside-toplevel
    from nasseg_tf.search.autodeeplab.batched_cell import SearchBatchNorm  # pylint: disable=import-outside-toplevel

    make = ((lambda: batch_norm("bn", momentum=0.5)) if kind == "keras"
            else (lambda: SearchBatchNorm(affine=True, momentum=0.5)))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32")
    x[1] += 2.0  # the replicas' batches differ in mean
    single = make()
    expected = np.asarray(single(x, training=True))  # one device, the whole batch
    synced, layer = _per_replica_outputs(make, x, sync=True)
    np.testing.assert_allclose(synced, expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer.moving_variance),
                               np.asarray(single.moving_variance), atol=1e-4)
    local, _ = _per_replica_outputs(make, x, sync=False)
    assert not np.allclose(local, expected, atol=1e-2)  # per-replica statistics


def test_models_built_inside_the_block_have_only_synchronized_batch_norms():
    import keras  # pylint: disable=import-outside-toplevel
    from nasseg_tf import zoo  # pylint: disable=import-outside-toplevel
    from nasseg_tf.layers.common import synchronized_batch_norm  # pylint: disable=import-outside-toplevel
    from nasseg_tf.search.autodeeplab.batched_cell import SearchBatchNorm  # pylint: disable=import-outside-toplevel
    from nasseg_tf.search.autodeeplab.supernet import AutoDeepLabSupernet  # pylint: disable=import-outside-toplevel

    def norms(model):
        return [l for l in flatten_layers(model)
                if isinstance(l, (keras.layers.BatchNormalization, SearchBatchNorm))]

    with synchronized_batch_norm():
        model = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                          context_filters=8)
        supernet = AutoDeepLabSupernet(3, num_layers=2, filter_multiplier=2, num_blocks=2)
        supernet.build((None, None, None, 3))
    assert norms(model) and all(n.synchronized for n in norms(model))
    assert norms(supernet) and all(n.synchronized for n in norms(supernet))
    plain = zoo.build("mobilenetv2_dpc", num_classes=3, depth_multiplier=0.25,
                      context_filters=8)
    assert not any(n.synchronized for n in norms(plain))
