"""The Dense Prediction Cell layer and its pyramid pooling."""

import numpy as np
import pytest
import tensorflow as tf

from layer_checks import check_layer
from nasseg_tf.layers.dpc import DensePredictionCell, PyramidPooling
from nasseg_tf.search_space.dpc import DPCCell, GenotypeError

MIXED = [{"op": "pyramid_pooling", "grid_size": [2, 1], "input": -1},
         {"op": "conv", "kernel": 3, "rate": [1, 3], "input": 0},
         {"op": "conv", "kernel": 1, "rate": [1, 1], "input": -1},
         {"op": "pyramid_pooling", "grid_size": [1, 1], "input": 1}]


def _kernel_weights(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights
               if "kernel" in w.path)


def test_dpc_passes_layer_checks():
    check_layer(lambda: DensePredictionCell(MIXED, filters=8), (2, 9, 11, 5), (2, 9, 11, 8))


def test_published_top1_builds_with_the_papers_branch_weights():
    # SPEC §3.4: MobileNet-v2 (320 channels) + top-1 cell = 356,160 branch weights.
    layer = DensePredictionCell("dpc_top1_cityscapes")
    layer(np.zeros((1, 5, 9, 320), "float32"))
    branches = sum(_kernel_weights(b) for b in layer.branches)
    assert branches == 356_160
    assert _kernel_weights(layer.projection) == 5 * 256 * 256
    assert layer.branches[0].depthwise.dilation_rate == (1, 6)


def test_rates_are_multiplied_at_output_stride_8():
    layer = DensePredictionCell("dpc_top1_cityscapes", filters=4, output_stride=8)
    assert layer.branches[1].depthwise.dilation_rate == (36, 30)
    with pytest.raises(ValueError, match="divide 16"):
        DensePredictionCell("dpc_top1_cityscapes", output_stride=32)


def test_bad_cell_is_rejected_by_the_layer():
    with pytest.raises(GenotypeError, match="unknown op"):
        DensePredictionCell([{"op": "pool", "input": -1}])


def test_pyramid_pooling_kernel_follows_the_official_formula():
    # 513 crop at OS 16 -> 33x33 features; official kernel int((513-1)/(16*g)+1).
    official = PyramidPooling(4, (2, 4), output_stride=16, pool_crop_size=(513, 513))
    derived = PyramidPooling(4, (2, 4), output_stride=16)
    assert official.kernel_size((33, 33)) == derived.kernel_size((33, 33)) == (17, 9)
    assert derived.kernel_size((65, 129)) == (33, 33)  # whole frame: still 1/g windows
    assert official.kernel_size((65, 129)) == (17, 9)


def test_pyramid_pooling_equals_a_hand_computed_average():
    layer = PyramidPooling(3, (2, 3))
    x = np.random.default_rng(0).normal(size=(2, 7, 10, 4)).astype("float32")
    y = np.asarray(layer(x, training=False))
    assert y.shape == (2, 7, 10, 3)
    k_h, k_w = layer.kernel_size((7, 10))
    assert (k_h, k_w) == (4, 4)
    pooled = np.stack([np.stack([x[:, i:i + k_h, j:j + k_w].mean(axis=(1, 2))
                                 for j in range(10 - k_w + 1)], 1)
                       for i in range(7 - k_h + 1)], 1)
    expected = np.asarray(layer.conv(pooled, training=False))  # [2, 4, 7, 3]
    resized = tf.image.resize(expected, (7, 10), method="bilinear").numpy()
    np.testing.assert_allclose(y, resized, atol=1e-5)


def test_grid_one_is_image_pooling():
    layer = PyramidPooling(3, (1, 1))
    x = np.random.default_rng(1).normal(size=(1, 6, 5, 4)).astype("float32")
    y = np.asarray(layer(x, training=False))
    expected = np.asarray(layer.conv(x.mean(axis=(1, 2), keepdims=True), training=False))
    np.testing.assert_allclose(y, np.broadcast_to(expected, y.shape), atol=1e-5)


@pytest.mark.parametrize("crop", [None, (33, 49)])
def test_dynamic_sizes_match_static(crop):
    layer = DensePredictionCell(MIXED, filters=6, pool_crop_size=crop)
    x = np.random.default_rng(2).normal(size=(1, 9, 13, 5)).astype("float32")
    static = np.asarray(layer(x, training=False))
    served = tf.function(lambda z: layer(z, training=False), input_signature=[
        tf.TensorSpec([None, None, None, 5], tf.float32)], autograph=False)
    np.testing.assert_allclose(served(x).numpy(), static, atol=1e-4)
    bigger = np.random.default_rng(3).normal(size=(1, 17, 11, 5)).astype("float32")
    np.testing.assert_allclose(served(bigger).numpy(),
                               np.asarray(layer(bigger, training=False)), atol=1e-4)


def test_dropout_is_applied_before_the_projection_in_training_only():
    layer = DensePredictionCell(MIXED, filters=4, dropout_rate=0.5)
    x = np.random.default_rng(4).normal(size=(2, 5, 6, 3)).astype("float32")
    a = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), a)
    assert not np.allclose(np.asarray(layer(x, training=True)), a)
    after = DensePredictionCell(MIXED, filters=4, dropout_before_projection=False)
    assert after.get_config()["dropout_before_projection"] is False


def test_config_carries_the_cell():
    layer = DensePredictionCell(MIXED, filters=4)
    assert DPCCell.from_config(layer.get_config()["cell"]).to_config() == MIXED


def test_pyramid_pooling_with_aligned_corners_equals_the_official_graph():
    # 65x65 crop at OS 8 -> 9x9 features; grid 2x3: windows int(64/16+1)=5, int(64/24+1)=3.
    layer = PyramidPooling(3, (2, 3), output_stride=8, pool_crop_size=(65, 65),
                           align_corners=True, bn_epsilon=1e-5)
    x = np.random.default_rng(5).normal(size=(2, 9, 9, 4)).astype("float32")
    layer(x)
    rng = np.random.default_rng(6)
    for var in layer.non_trainable_variables:
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
    assert layer.kernel_size((9, 9)) == (5, 3)
    pooled = tf.nn.avg_pool2d(x, (5, 3), 1, "VALID")
    bn = layer.conv.norm
    y = tf.nn.conv2d(pooled, layer.conv.conv.kernel, 1, "VALID")
    y = tf.nn.relu(tf.nn.batch_normalization(y, bn.moving_mean, bn.moving_variance,
                                             bn.beta, bn.gamma, 1e-5))
    expected = tf.compat.v1.image.resize_bilinear(y, (9, 9), align_corners=True)
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected.numpy(),
                               rtol=0, atol=1e-5)


def test_dpc_gives_its_pooling_branches_the_resizing_convention():
    layer = DensePredictionCell(MIXED, filters=4, align_corners=True)
    assert [b.align_corners for b in layer.branches if isinstance(b, PyramidPooling)] == [
        True, True]
    config = layer.get_config()
    assert config["align_corners"] is True
    check_layer(lambda: DensePredictionCell.from_config(config), (2, 9, 11, 5),
                (2, 9, 11, 4))


def test_configs_saved_without_align_corners_resize_with_half_pixel_centres():
    config = PyramidPooling(3, (2, 2), align_corners=True, name="pp").get_config()
    del config["align_corners"], config["use_bn"]  # saved before the options existed
    layer = PyramidPooling.from_config(config)
    assert not layer.align_corners and layer.use_bn
    cell = DensePredictionCell(MIXED, filters=4).get_config()
    del cell["align_corners"]
    assert not DensePredictionCell.from_config(cell).align_corners
