"""Pictures people would rather look at than read: colorized label maps and overlays."""

import os

import numpy as np
from PIL import Image


def overlay(image, colored_label, alpha=0.5):
    """Blends a colorized label map over an RGB image (both uint8 ``[H, W, 3]``)."""
    image = np.asarray(image, np.float32)
    colored = np.asarray(colored_label, np.float32)
    if image.shape != colored.shape:
        raise ValueError(f"image {image.shape} and label {colored.shape} differ in size")
    return np.clip((1 - alpha) * image + alpha * colored, 0, 255).astype(np.uint8)


def save_png(array, path):
    """Writes a uint8 array as PNG atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    Image.fromarray(np.asarray(array, np.uint8)).save(tmp)
    os.replace(tmp, path)
    return path


def side_by_side(*panels, gap=4):
    """Concatenates equally tall RGB panels horizontally with a white gap."""
    height = panels[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    parts = []
    for i, panel in enumerate(panels):
        if panel.shape[0] != height:
            raise ValueError("side_by_side: panels must share their height")
        parts += ([spacer] if i else []) + [np.asarray(panel, np.uint8)]
    return np.concatenate(parts, axis=1)
