"""Segmenter assembly: input scaling equals the official formula to the bit; the logits
are upsampled in the model's resizing convention."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.models.segmenter import build_segmenter, preprocess_layer


def test_input_scaling_is_the_official_formula_to_the_bit():
    # Official DeepLab: (2.0 / 255.0) * tf.to_float(x) - 1.0, in float32 (SPEC §7).
    pixels = np.concatenate([np.arange(256, dtype="float32"),
                             np.random.default_rng(0).uniform(0, 255, 10_000)
                             .astype("float32")])
    official = (tf.constant(2.0 / 255.0, tf.float32) * tf.constant(pixels)
                - tf.constant(1.0, tf.float32)).numpy()
    ours = np.asarray(preprocess_layer("minus_one_to_one")(pixels))
    np.testing.assert_array_equal(ours.view("int32"), official.view("int32"))  # 0 ulp
    assert ours[0] == -1.0 and ours[255] == 1.0


def test_unknown_preprocess_mode_lists_known_ones():
    with pytest.raises(ValueError, match="minus_one_to_one"):
        preprocess_layer("imagenet")


def _tiny_segmenter(align_corners):
    def backbone(x):
        y = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="down")(x)
        return {"features": y}
    return build_segmenter(backbone, None, None, 3, "tiny", align_corners=align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
def test_logits_are_upsampled_in_the_models_convention(align_corners):
    model = _tiny_segmenter(align_corners)
    x = np.random.default_rng(1).uniform(0, 255, (1, 17, 13, 3)).astype("float32")
    logits_small = keras.Model(model.input, model.get_layer("logits").output)(x)
    if align_corners:
        expected = tf.compat.v1.image.resize_bilinear(logits_small, (17, 13),
                                                      align_corners=True)
    else:
        expected = tf.image.resize(logits_small, (17, 13))
    np.testing.assert_allclose(np.asarray(model(x)), expected.numpy(), rtol=0, atol=1e-5)
    assert model.get_layer("upsample_logits").align_corners is align_corners
