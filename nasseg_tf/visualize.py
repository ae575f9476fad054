"""Pictures people would rather look at than read: colorized label maps, overlays, and
the atomic PNG writer every picture of the package goes through."""

import io
import os

import numpy as np
from PIL import Image

from nasseg_tf import fileio


#: Box styles of graph pictures (cells as DAGs): inputs, inner nodes, the output.
NODE_STYLES = {
    "input": dict(boxstyle="round,pad=0.45", facecolor="#d6eaf8", edgecolor="#2e86c1"),
    "block": dict(boxstyle="round,pad=0.45", facecolor="#fdf2d0", edgecolor="#b7950b"),
    "output": dict(boxstyle="round,pad=0.45", facecolor="#d5f5e3", edgecolor="#1e8449"),
}
#: Inches per data unit of graph pictures drawn at equal aspect.
INCHES_PER_UNIT = 0.5


def overlay(image, colored_label, alpha=0.5):
    """Blends a colorized label map over an RGB image (both uint8 ``[H, W, 3]``)."""
    image = np.asarray(image, np.float32)
    colored = np.asarray(colored_label, np.float32)
    if image.shape != colored.shape:
        raise ValueError(f"image {image.shape} and label {colored.shape} differ in size")
    return np.clip((1 - alpha) * image + alpha * colored, 0, 255).astype(np.uint8)


def save_png(array, path):
    """Writes a uint8 array as PNG atomically (:func:`~nasseg_tf.fileio.atomic_write_bytes`)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    fileio.atomic_write_bytes(path, buffer.getvalue())
    return path


def save_figure(figure, path, dpi=150):
    """Renders a matplotlib ``Figure`` (Agg canvas, no pyplot state) to a PNG at
    ``path``, atomically; returns ``path``."""
    if not path:
        raise ValueError("path: required (where to write the PNG)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    path = os.fspath(path)
    fileio.atomic_write_bytes(path, buffer.getvalue())
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
