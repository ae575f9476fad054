"""Weights into zoo models: Keras' ImageNet MobileNet-v2 (official checkpoints: see
tests/models/test_official_checkpoints.py)."""

import keras
import numpy as np
import pytest

from nasseg_tf.models import weights, zoo
from nasseg_tf.train.checkpointing import variables_by_path


def test_keras_mobilenet_v2_weights_land_in_our_backbone():
    keras.utils.set_random_seed(0)
    theirs = keras.applications.MobileNetV2(weights=None, include_top=False,
                                            input_shape=(64, 64, 3))
    for variable in theirs.variables:  # random, distinguishable values
        variable.assign(np.random.default_rng(len(variable.path)).normal(
            size=variable.shape).astype("float32"))
    ours = zoo.build("mobilenetv2_dpc", num_classes=3, context_filters=8)
    report = weights.load_keras_mobilenet_v2(ours, theirs)
    mine = variables_by_path(ours.variables)
    by_name = {v.path: v for v in theirs.variables}
    for our, their in (("stem_conv/kernel", "Conv1/kernel"),
                       ("block0_depthwise_bn/moving_variance",
                        "expanded_conv_depthwise_BN/moving_variance"),
                       ("block7_expand/kernel", "block_7_expand/kernel"),
                       ("block16_project_bn/gamma", "block_16_project_BN/gamma")):
        np.testing.assert_array_equal(mine[our].numpy(), by_name[their].numpy())
    assert report["loaded"] == len(theirs.variables) - 5  # all but Conv_1 (kernel + BN)
    assert sorted(report["unused"]) == ["Conv_1/kernel", "Conv_1_bn/beta",
                                        "Conv_1_bn/gamma", "Conv_1_bn/moving_mean",
                                        "Conv_1_bn/moving_variance"]


def test_keras_mobilenet_v2_of_another_width_is_refused():
    theirs = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.5,
                                            input_shape=(64, 64, 3))
    ours = zoo.build("mobilenetv2_dpc", num_classes=3, context_filters=8)
    with pytest.raises(weights.CheckpointImportError, match="another shape"):
        weights.load_keras_mobilenet_v2(ours, theirs)


def test_backbone_weights_imagenet_takes_keras_mobilenet_v2(monkeypatch):
    made, real = [], keras.applications.MobileNetV2

    def fake_mobilenet_v2(weights, include_top, alpha, input_shape):  # no download
        assert (weights, include_top) == ("imagenet", False)
        model = real(weights=None, include_top=False, alpha=alpha, input_shape=input_shape)
        made.append(model)
        return model

    monkeypatch.setattr(keras.applications, "MobileNetV2", fake_mobilenet_v2)
    ours = zoo.build("mobilenetv2_aspp", num_classes=3, context_filters=8,
                     backbone_weights="imagenet")
    np.testing.assert_array_equal(variables_by_path(ours.variables)["block5_project/kernel"],
                                  made[0].get_layer("block_5_project").kernel.numpy())
    with pytest.raises(ValueError, match="MobileNet-v2 backbone"):
        zoo.build("xception71_dpc", num_classes=3, backbone_weights="imagenet")
