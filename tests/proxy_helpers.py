"""Shared pieces of the DPC feature-cache and proxy tests: a tiny backbone, a cache."""

import hashlib

import keras

from nasseg_tf.search.dpc.cache import FeatureCache

CROP = (32, 32)
CELL = [{"op": "conv", "kernel": 3, "rate": [1, 1], "input": -1},
        {"op": "conv", "kernel": 1, "input": 0}]
BUILDER_CALLS = []


def tiny_backbone(images, width=8, output_stride=4):
    """A stand-in backbone builder with the signature of mobilenet_v2_backbone."""
    x = images
    for i, filters in enumerate((width, 2 * width)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return {"features": x, "low_level": None, "output_stride": output_stride}


def counting_backbone(images, **config):
    BUILDER_CALLS.append(config)
    return tiny_backbone(images, **config)


def make_cache(root, data, **kwargs):
    args = dict(backbone_name="tiny", backbone_fn=counting_backbone,
                backbone_config={"width": 8}, train_pattern=data["train"],
                val_pattern=data["val"], dataset_info="demo", crop_size=CROP,
                shard_size=5, progress=False)
    args.update(kwargs)
    return FeatureCache(str(root), **args)


def digest(cache_):
    """SHA-256 of every cached array, train then val."""
    digest = hashlib.sha256()
    for split in ("train", "val"):
        for array in cache_.arrays(split):
            digest.update(array.tobytes())
    return digest.hexdigest()
