"""Assembly of a DeepLab-style segmenter: preprocessing → backbone → context → decoder.

Every zoo model takes float images of any size in raw pixel units [0, 255] and returns
logits at the input size. Normalisation lives inside the model (one less thing to get
wrong between training, evaluation and serving); ``preprocess`` picks it. The official
DeepLab graph scales pixels as ``(2 / 255) · x − 1`` (SPEC §7); ``minus_one_to_one`` is
that formula in float32 to the bit (Keras' ``Rescaling`` computes ``x · scale + offset``
with ``scale`` = float32(2/255) = float32(1/127.5); the tests compare all 256 pixel
values).

The logits are upsampled to the input size bilinearly with the model's resizing
convention (``align_corners``; :mod:`nasseg_tf.layers.resize`).
"""

import keras

from nasseg_tf.layers.resize import ResizeLike

_PREPROCESS = {
    # pixels to [-1, 1] as (2/255)·x − 1 (Auto-DeepLab, Xception, MobileNet-v2 in DeepLab).
    "minus_one_to_one": dict(scale=2.0 / 255.0, offset=-1.0),
    "zero_to_one": dict(scale=1.0 / 255.0, offset=0.0),
    "none": None,
}


def preprocess_layer(mode):
    """A Rescaling layer for a preprocessing mode name."""
    if mode not in _PREPROCESS:
        raise ValueError(f"unknown preprocess mode {mode!r}; known: {', '.join(_PREPROCESS)}")
    spec = _PREPROCESS[mode]
    if spec is None:
        return keras.layers.Identity(name="preprocess")
    return keras.layers.Rescaling(name="preprocess", **spec)


def build_segmenter(backbone_fn, context, decoder, num_classes, name,
                    preprocess="minus_one_to_one", align_corners=False):
    """Builds a functional ``keras.Model``: raw images → logits at input size.

    Args:
      backbone_fn: callable(normalised image tensor) → dict with ``features`` and,
        when a decoder is used, ``low_level``.
      context: a context-module layer (ASPP / DPC) named ``context``, or None.
      decoder: a decoder layer taking ``[features, low_level]``, or None.
      num_classes: number of output classes.
      name: the model name.
      preprocess: normalisation mode (see ``_PREPROCESS``).
      align_corners: resizing convention of the logits upsampling (False: half-pixel
        centres; True: the official DeepLab graph's ``align_corners=True``).
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    images = keras.Input(shape=(None, None, 3), name="images")
    x = preprocess_layer(preprocess)(images)
    endpoints = backbone_fn(x)
    y = endpoints["features"]
    if context is not None:
        y = context(y)
    if decoder is not None:
        y = decoder([y, endpoints["low_level"]])
    logits = keras.layers.Conv2D(num_classes, 1, use_bias=True, name="logits")(y)
    logits = ResizeLike(align_corners, name="upsample_logits")([logits, images])
    return keras.Model(images, logits, name=name)
