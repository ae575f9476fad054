"""A procedural street-scene dataset for demos and tests, deterministic by seed.

Each scene has a horizon and a vanishing point: sky above, a skyline of buildings
with window grids, trees, a road in perspective with lane markings, sidewalks, and
poles, cars and people whose size follows their distance from the horizon — so the
same class appears at many scales and aspect ratios in one image.

Colour alone does not identify a class. Every region picks its colour from a mixture
of a class-typical distribution and a *shared* pool of neutral colours (grey roads,
grey overcast skies, grey buildings, grey cars, grey poles ...), then gets a global
illumination field, cast shadows and noise. A per-pixel colour classifier therefore
confuses the classes; texture, shape and layout (context) are needed. The classes
and their palette are the ``demo`` entry of :mod:`nasseg_tf.data.datasets`.

Example:
    >>> image, label = generate_demo_example(seed=3, height=96, width=128)
    >>> patterns = ensure_demo_dataset("/tmp/demo_data")  # {"train": ..., "val": ...}
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image

from nasseg_tf import fileio
from nasseg_tf.data import datasets
from nasseg_tf.data import tfrecord

_INFO = datasets.get_dataset_info("demo")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = (
    _INFO.class_names.index(name) for name in
    ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole"))

# Bump when the generator's output changes, so cached datasets are regenerated.
GENERATOR_VERSION = 1
MANIFEST_NAME = "demo_manifest.json"
SPLITS = ("train", "val")


class _Canvas:
    """An image (float RGB) and its label map, painted back to front."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.rows = np.arange(height, dtype=np.float32)[:, None]
        self.cols = np.arange(width, dtype=np.float32)[None, :]

    def paint(self, mask: np.ndarray, cls: int, colour, box=None) -> None:
        """Paints ``mask`` (full frame, or the ``box`` = (y0, y1, x0, x1) window)."""
        y0, y1, x0, x1 = box or (0, self.height, 0, self.width)
        self.image[y0:y1, x0:x1][mask] = colour
        self.label[y0:y1, x0:x1][mask] = cls

    def box(self, top: float, bottom: float, left: float, right: float):
        """Integer window clipped to the canvas, or None when empty."""
        y0, y1 = max(int(round(top)), 0), min(int(round(bottom)), self.height)
        x0, x1 = max(int(round(left)), 0), min(int(round(right)), self.width)
        return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None

    def rect(self, top, bottom, left, right, cls, colour) -> None:
        box = self.box(top, bottom, left, right)
        if box:
            self.paint(np.ones((box[1] - box[0], box[3] - box[2]), bool), cls, colour, box)

    def ellipse(self, cy, cx, ry, rx, cls, colour) -> None:
        box = self.box(cy - ry, cy + ry + 1, cx - rx, cx + rx + 1)
        if not box:
            return
        y0, y1, x0, x1 = box
        dy = (self.rows[y0:y1] - cy) / max(ry, 0.5)
        dx = (self.cols[:, x0:x1] - cx) / max(rx, 0.5)
        self.paint(dy * dy + dx * dx <= 1.0, cls, colour, box)


# ---------------------------------------------------------------------------------------
# Colours: class-typical distributions mixed with a pool shared by all classes.
# ---------------------------------------------------------------------------------------
def _shared_colour(rng: np.random.Generator) -> np.ndarray:
    """A neutral colour any class may take: grey with a faint random tint."""
    return rng.uniform(45, 205) + rng.normal(0, 10, 3)


def _hue_colour(rng, centre, spread) -> np.ndarray:
    return np.asarray(centre, np.float32) + rng.normal(0, spread, 3)


_TYPICAL: Dict[int, Callable[[np.random.Generator], np.ndarray]] = {
    ROAD: lambda rng: _hue_colour(rng, (95, 92, 98), 18),
    SIDEWALK: lambda rng: _hue_colour(rng, rng.choice([(150, 140, 135), (165, 110, 95)]), 20),
    BUILDING: lambda rng: _hue_colour(
        rng, rng.choice([(120, 110, 100), (170, 150, 120), (140, 75, 60), (90, 110, 130)]), 20),
    VEGETATION: lambda rng: _hue_colour(
        rng, rng.choice([(70, 110, 45), (100, 135, 60), (120, 110, 60)]), 18),
    SKY: lambda rng: _hue_colour(
        rng, rng.choice([(120, 160, 210), (190, 195, 205), (215, 170, 130)]), 15),
    CAR: lambda rng: rng.uniform(20, 235, 3),
    PERSON: lambda rng: rng.uniform(20, 220, 3),
    POLE: lambda rng: _hue_colour(rng, rng.choice([(100, 100, 100), (60, 75, 60)]), 20),
}

# Probability that a region takes a shared neutral colour instead of a typical one.
_SHARED_PROBABILITY = 0.45


def _colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    if rng.uniform() < _SHARED_PROBABILITY:
        return _shared_colour(rng)
    return _TYPICAL[cls](rng)


# ---------------------------------------------------------------------------------------
# Scene parts, painted back to front.
# ---------------------------------------------------------------------------------------
class _Scene:
    """Geometry shared by the painters: horizon, vanishing point, road edges."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.horizon = height * rng.uniform(0.3, 0.55)
        self.vanish_x = width * rng.uniform(0.3, 0.7)
        self.road_left = width * rng.uniform(-0.3, 0.3)
        self.road_right = width * rng.uniform(0.7, 1.3)
        self.walk = width * rng.uniform(0.15, 0.45)  # sidewalk width at the bottom row
        self.height, self.width = height, width

    def depth(self, y: np.ndarray) -> np.ndarray:
        """0 at the horizon, 1 at the bottom row (perspective scale)."""
        return np.clip((y - self.horizon) / (self.height - self.horizon), 0.0, 1.5)

    def edge(self, bottom_x: float, y) -> np.ndarray:
        """x of the line from ``bottom_x`` (bottom row) to the vanishing point."""
        return self.vanish_x + (bottom_x - self.vanish_x) * self.depth(y)


def _paint_sky(canvas: _Canvas, scene: _Scene, rng) -> None:
    top, bottom = _colour(rng, SKY), _colour(rng, SKY)
    rows = int(np.ceil(scene.horizon))
    t = canvas.rows[:rows, :, None] / max(scene.horizon, 1.0)
    canvas.image[:rows] = top + (bottom - top) * t
    canvas.label[:rows] = SKY


def _paint_ground(canvas: _Canvas, scene: _Scene, rng) -> None:
    y0 = int(scene.horizon)
    rows = canvas.rows[y0:]
    cols = canvas.cols
    walk = np.ones((rows.shape[0], canvas.width), bool)
    canvas.paint(walk, SIDEWALK, _colour(rng, SIDEWALK), (y0, canvas.height, 0, canvas.width))
    tiles = ((rows.astype(int) // 4 + cols.astype(int) // 6) % 2 == 0)
    canvas.image[y0:][tiles & (canvas.label[y0:] == SIDEWALK)] *= rng.uniform(0.85, 0.97)
    left, right = scene.edge(scene.road_left, rows), scene.edge(scene.road_right, rows)
    road = (cols >= left) & (cols < right)
    canvas.paint(road, ROAD, _colour(rng, ROAD), (y0, canvas.height, 0, canvas.width))
    centre = scene.edge((scene.road_left + scene.road_right) / 2, rows)
    half = 0.5 + 1.5 * scene.depth(rows)
    dashes = (np.abs(cols - centre) < half) & ((rows.astype(int) // 6) % 2 == 0) & road
    canvas.image[y0:][dashes] = rng.uniform(170, 235)


def _paint_buildings(canvas: _Canvas, scene: _Scene, rng) -> None:
    x = -rng.uniform(0, 0.2) * canvas.width
    while x < canvas.width:
        w = canvas.width * rng.uniform(0.08, 0.4)
        if rng.uniform() > 0.15:
            top = scene.horizon - canvas.height * rng.uniform(0.05, 0.5)
            bottom = scene.horizon + canvas.height * rng.uniform(0.0, 0.04)
            colour = _colour(rng, BUILDING)
            canvas.rect(top, bottom, x, x + w, BUILDING, colour)
            _paint_windows(canvas, rng, top, bottom, x, x + w, colour)
        x += w


def _paint_windows(canvas: _Canvas, rng, top, bottom, left, right, colour) -> None:
    box = canvas.box(top, bottom, left, right)
    if not box or rng.uniform() < 0.25:
        return
    y0, y1, x0, x1 = box
    step_y, step_x = rng.integers(4, 10), rng.integers(4, 10)
    ys = (canvas.rows[y0:y1].astype(int) - y0) % step_y < step_y // 2
    xs = (canvas.cols[:, x0:x1].astype(int) - x0) % step_x < step_x // 2
    canvas.image[y0:y1, x0:x1][ys & xs] = colour * rng.uniform(0.4, 1.4)


def _paint_trees(canvas: _Canvas, scene: _Scene, rng) -> None:
    for _ in range(rng.integers(0, 5)):
        base_y = scene.horizon + rng.uniform(0.0, 0.5) * (canvas.height - scene.horizon)
        size = canvas.height * (0.08 + 0.35 * scene.depth(base_y)) * rng.uniform(0.6, 1.4)
        cx = canvas.width * rng.uniform(0, 1)
        colour = _colour(rng, VEGETATION)
        canvas.rect(base_y - size, base_y, cx - size * 0.06, cx + size * 0.06, VEGETATION,
                    colour * 0.6)
        for _ in range(rng.integers(2, 6)):
            r = size * rng.uniform(0.2, 0.45)
            canvas.ellipse(base_y - size + rng.normal(0, size * 0.2),
                           cx + rng.normal(0, size * 0.25), r, r * rng.uniform(0.7, 1.4),
                           VEGETATION, colour * rng.uniform(0.8, 1.2))


def _paint_poles(canvas: _Canvas, scene: _Scene, rng) -> None:
    for _ in range(rng.integers(0, 5)):
        base_y = scene.horizon + rng.uniform(0.1, 1.0) * (canvas.height - scene.horizon)
        side = scene.road_left if rng.uniform() < 0.5 else scene.road_right
        x = float(scene.edge(side, base_y)) + rng.normal(0, 2)
        depth = float(scene.depth(base_y))
        height = canvas.height * (0.25 + 0.9 * depth)
        half = max(0.6, canvas.width * 0.008 * (0.5 + depth))
        canvas.rect(base_y - height, base_y, x - half, x + half, POLE, _colour(rng, POLE))


def _paint_car(canvas: _Canvas, scene: _Scene, rng, base_y: float) -> None:
    depth = float(scene.depth(base_y))
    width = canvas.width * (0.05 + 0.45 * depth) * rng.uniform(0.7, 1.3)
    height = width * rng.uniform(0.35, 0.75)
    left_edge = float(scene.edge(scene.road_left, base_y))
    right_edge = float(scene.edge(scene.road_right, base_y))
    cx = rng.uniform(left_edge, max(right_edge, left_edge + 1))
    colour = _colour(rng, CAR)
    canvas.rect(base_y - height * 0.6, base_y - height * 0.1, cx - width / 2, cx + width / 2,
                CAR, colour)
    canvas.rect(base_y - height, base_y - height * 0.55, cx - width * 0.3, cx + width * 0.3,
                CAR, colour * rng.uniform(0.5, 0.9))
    wheel = height * 0.18
    for wx in (cx - width * 0.3, cx + width * 0.3):
        canvas.ellipse(base_y - wheel, wx, wheel, wheel, CAR, np.full(3, rng.uniform(15, 60)))


def _paint_person(canvas: _Canvas, scene: _Scene, rng, base_y: float) -> None:
    depth = float(scene.depth(base_y))
    height = canvas.height * (0.08 + 0.5 * depth) * rng.uniform(0.8, 1.2)
    width = height * rng.uniform(0.22, 0.4)
    cx = canvas.width * rng.uniform(0, 1)
    head = height * 0.11
    canvas.ellipse(base_y - height + head, cx, head, head * 0.85, PERSON,
                   _hue_colour(rng, (190, 150, 120), 30))
    canvas.ellipse(base_y - height * 0.6, cx, height * 0.25, width / 2, PERSON,
                   _colour(rng, PERSON))
    legs = _colour(rng, PERSON)
    for offset in (-0.25, 0.1):
        canvas.rect(base_y - height * 0.4, base_y, cx + offset * width,
                    cx + (offset + 0.15) * width, PERSON, legs)


def _paint_objects(canvas: _Canvas, scene: _Scene, rng) -> None:
    """Cars and people sorted by distance, far ones first (they get occluded)."""
    span = canvas.height - scene.horizon
    objects = [(scene.horizon + rng.uniform(0.05, 1.1) * span, _paint_car)
               for _ in range(rng.integers(1, 6))]
    objects += [(scene.horizon + rng.uniform(0.05, 1.05) * span, _paint_person)
                for _ in range(rng.integers(0, 6))]
    for base_y, painter in sorted(objects, key=lambda item: item[0]):
        painter(canvas, scene, rng, base_y)


def _smooth_noise(rng, height: int, width: int, cell: int = 8) -> np.ndarray:
    """Low-frequency noise: a coarse normal grid upsampled bilinearly."""
    coarse = rng.normal(0, 1, (height // cell + 2, width // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(
        (width, height), Image.BILINEAR))


def _finish(canvas: _Canvas, rng) -> np.ndarray:
    """Illumination gradient, cast shadows and sensor noise; returns uint8."""
    h, w = canvas.height, canvas.width
    light = (1.0 + rng.uniform(-0.25, 0.25) * (canvas.rows / h - 0.5)
             + rng.uniform(-0.25, 0.25) * (canvas.cols / w - 0.5))
    image = canvas.image * light[..., None]
    for _ in range(rng.integers(0, 4)):
        box = canvas.box(*sorted(rng.uniform(0, h, 2)), *sorted(rng.uniform(0, w, 2)))
        if box:
            image[box[0]:box[1], box[2]:box[3]] *= rng.uniform(0.45, 0.8)
    image *= 1.0 + 0.08 * _smooth_noise(rng, h, w)[..., None]
    image += rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


_PAINTERS = (_paint_sky, _paint_ground, _paint_buildings, _paint_trees, _paint_poles,
             _paint_objects)


def generate_demo_example(seed: int, height: int = 128,
                          width: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """Generates one street scene.

    Args:
        seed: Any non-negative int; the same seed gives the same scene.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        ``(image uint8 [H, W, 3], label uint8 [H, W])`` with labels in ``0..7``.
    """
    if height < 8 or width < 8:
        raise ValueError(f"Demo images need at least 8x8 pixels, got {height}x{width}.")
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width)
    scene = _Scene(rng, height, width)
    for painter in _PAINTERS:
        painter(canvas, scene, rng)
    return _finish(canvas, rng), canvas.label


# ---------------------------------------------------------------------------------------
# Cached TFRecords
# ---------------------------------------------------------------------------------------
def _example_seed(seed: int, split: str, index: int) -> int:
    entropy = [seed, SPLITS.index(split), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _split_pattern(data_dir: str, split: str, num_shards: int) -> str:
    return os.path.join(data_dir, f"{split}-*-of-{num_shards:05d}{tfrecord.TFRECORD_SUFFIX}")


def _read_manifest(data_dir: str):
    try:
        return fileio.read_json(os.path.join(data_dir, MANIFEST_NAME))
    except (OSError, ValueError):
        return None


def _is_current(manifest, config: dict, data_dir: str) -> bool:
    if not manifest or manifest.get("config") != config:
        return False
    files = [f for names in manifest.get("files", {}).values() for f in names]
    return bool(files) and all(fileio.exists(os.path.join(data_dir, f)) for f in files)


def _write_split(tmp_dir: str, split: str, count: int, config: dict):
    with tfrecord.ShardedRecordWriter(tmp_dir, split, config["num_shards"]) as writer:
        for index in range(count):
            image, label = generate_demo_example(
                _example_seed(config["seed"], split, index), config["height"],
                config["width"])
            writer.write(tfrecord.example_from_arrays(image, label, f"demo_{split}_{index:06d}"))
    return [os.path.basename(path) for path in writer.paths]


def ensure_demo_dataset(data_dir: str, *, num_train: int = 200, num_val: int = 50,
                        height: int = 128, width: int = 128, seed: int = 0,
                        num_shards: int = 2) -> Dict[str, str]:
    """Writes the demo TFRecords on first use and returns their file patterns.

    A JSON manifest (``demo_manifest.json``) records the configuration; a later call
    with the same configuration reuses the files, a different one regenerates them.
    Files are generated in a temporary folder (:func:`nasseg_tf.fileio.temp_dir`) and
    renamed into place, the manifest last (atomically), so an interrupted run leaves
    nothing that looks complete.

    Args:
        data_dir: Folder for the shards and the manifest (created if missing).
        num_train: Training images.
        num_val: Validation images.
        height: Image height.
        width: Image width.
        seed: Dataset seed; each image's seed derives from it, the split and the index.
        num_shards: Shards per split.

    Returns:
        ``{"train": pattern, "val": pattern}`` for :func:`~nasseg_tf.data.build_dataset`.
    """
    config = {"version": GENERATOR_VERSION, "num_train": int(num_train),
              "num_val": int(num_val), "height": int(height), "width": int(width),
              "seed": int(seed), "num_shards": int(num_shards)}
    patterns = {split: _split_pattern(data_dir, split, num_shards) for split in SPLITS}
    fileio.makedirs(data_dir)
    if _is_current(_read_manifest(data_dir), config, data_dir):
        return patterns
    counts = {"train": num_train, "val": num_val}
    # Temporary folders before the fileio naming record no owner: removed by age.
    fileio.clean_stale_temps(data_dir, fileio.legacy_mkdtemp_glob(".demo-tmp-"))
    tmp_dir = fileio.temp_dir(os.path.join(data_dir, "demo"))
    try:
        files = {split: _write_split(tmp_dir, split, counts[split], config)
                 for split in SPLITS}
        tfrecord.install_shards(tmp_dir, data_dir, files)
        fileio.atomic_write_json(os.path.join(data_dir, MANIFEST_NAME),
                                 {"config": config, "files": files}, indent=2,
                                 sort_keys=True)
    finally:
        fileio.remove_tree(tmp_dir, ignore_errors=True)
    return patterns
