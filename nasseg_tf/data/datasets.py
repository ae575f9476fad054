"""Registry of segmentation dataset descriptions, and description files.

A :class:`DatasetInfo` is plain data: the number of classes, the ignore label, the
class names and the colour palette used to draw predictions. The entries below are
the datasets the papers report on (SPEC §4) plus the procedural ``demo`` dataset
(:mod:`nasseg_tf.data.demo`).

A user's own dataset needs no code: the converter (``nasseg-build-data``) writes a
*description file* ``dataset.json`` beside its TFRecord shards (:func:`write_description`)
and :func:`get_dataset_info` accepts, besides a registry name, that file or the folder
holding it. The description's format (version 1)::

    {"format": "nasseg_tf.dataset", "version": 1,
     "name": "flowers", "num_classes": 3, "ignore_label": 255,
     "class_names": ["background", "petal", "stem"],
     "palette": [[0, 0, 0], [220, 20, 60], [107, 142, 35]],
     "splits": {"train": {"shards": "train-*-of-00004.tfrecord", "num_records": 120,
                          "pixel_counts": [812345, 90211, 12003],
                          "ignored_pixels": 0},
                "val": {...}},
     "description": "..."}

``shards`` are glob patterns relative to the description's folder (so the folder can
be moved or copied to a bucket as a whole); ``pixel_counts`` are the labelled pixels of
each class in that split, counted during the conversion.

Example:
    >>> info = get_dataset_info("cityscapes")
    >>> info.num_classes, info.class_names[0]
    (19, 'road')
    >>> mine = get_dataset_info("/data/flowers/tfrecord")   # holds dataset.json
    >>> mine.split_pattern("train")
    '/data/flowers/tfrecord/train-*-of-00004.tfrecord'
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from nasseg_tf import fileio

RGB = Tuple[int, int, int]

DEFAULT_IGNORE_LABEL = 255

DESCRIPTION_FILE = "dataset.json"
"""Name of the dataset description the converter writes beside its shards."""
DESCRIPTION_FORMAT = "nasseg_tf.dataset"
DESCRIPTION_VERSION = 1
"""The description format this package writes and reads."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Description of a semantic segmentation dataset.

    Attributes:
        name: Registry key, e.g. ``"cityscapes"``.
        num_classes: Number of trained classes; valid labels are ``0..num_classes-1``.
        ignore_label: Label value excluded from the loss and the metrics.
        class_names: One name per class, in label order.
        palette: One ``(r, g, b)`` colour per class, in label order.
        splits: ``(split, number_of_images)`` pairs of the official release.
        label_mapping: How raw annotation values become training labels (prose).
        description: One line about the dataset.
        path: The description file this came from (absolute); ``""`` for registry
            entries.
        patterns: ``(split, shard glob pattern)`` pairs of a description (absolute,
            or remote URLs).
        pixel_counts: ``(split, per-class labelled pixel counts)`` pairs of a
            description.
    """

    name: str
    num_classes: int
    ignore_label: int = DEFAULT_IGNORE_LABEL
    class_names: Tuple[str, ...] = ()
    palette: Tuple[RGB, ...] = ()
    splits: Tuple[Tuple[str, int], ...] = ()
    label_mapping: str = "labels are stored as class indices"
    description: str = ""
    path: str = ""
    patterns: Tuple[Tuple[str, str], ...] = ()
    pixel_counts: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"Dataset {self.name!r}: num_classes must be >= 1, "
                             f"got {self.num_classes}.")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"Dataset {self.name!r}: {len(self.class_names)} class names "
                             f"for {self.num_classes} classes.")
        if len(self.palette) != self.num_classes:
            raise ValueError(f"Dataset {self.name!r}: {len(self.palette)} palette colours "
                             f"for {self.num_classes} classes.")
        for colour in self.palette:
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise ValueError(f"Dataset {self.name!r}: bad palette colour {colour!r}.")
        if 0 <= self.ignore_label < self.num_classes:
            raise ValueError(f"Dataset {self.name!r}: ignore_label {self.ignore_label} "
                             f"collides with a class index.")

    @property
    def split_sizes(self) -> Dict[str, int]:
        """The official split sizes as a dict."""
        return dict(self.splits)

    def split_pattern(self, split: str) -> Optional[str]:
        """The shard pattern of ``split`` in a description; None when it has none."""
        return dict(self.patterns).get(split)

    def palette_array(self) -> np.ndarray:
        """The palette as a ``uint8`` array of shape ``[num_classes, 3]``."""
        return np.asarray(self.palette, dtype=np.uint8).reshape(self.num_classes, 3)

    def colorize(self, label: np.ndarray, ignore_color: RGB = (0, 0, 0)) -> np.ndarray:
        """Draws a label map with the dataset palette.

        Args:
            label: Integer array ``[H, W]`` of class indices (ignore allowed).
            ignore_color: Colour of pixels outside ``0..num_classes-1``.

        Returns:
            ``uint8`` array ``[H, W, 3]``.
        """
        label = np.asarray(label)
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[:] = ignore_color
        lut[: self.num_classes] = self.palette_array()
        valid = (label >= 0) & (label < 256)
        return lut[np.where(valid, label, 255).astype(np.int64)]


_REGISTRY: Dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo, *, overwrite: bool = False) -> DatasetInfo:
    """Adds a dataset description to the registry.

    Args:
        info: The description; ``info.name`` becomes its key.
        overwrite: Replace an existing entry of the same name instead of failing.

    Returns:
        ``info``, so the call can be used as an expression.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is false.
    """
    if info.name in _REGISTRY and not overwrite:
        raise ValueError(f"Dataset {info.name!r} is already registered.")
    _REGISTRY[info.name] = info
    return info


def get_dataset_info(name: str) -> DatasetInfo:
    """The dataset ``name``: a registry name, a description file or its folder.

    This is the one place a dataset setting (``Data.dataset``, ``--dataset``) becomes
    a :class:`DatasetInfo`. A registered name wins; anything else is a path (local or
    remote): a folder holding :data:`DESCRIPTION_FILE` or the description file itself
    (:func:`load_description`).

    Raises:
        ValueError: If ``name`` is neither; the message lists the known datasets. A
            bad description raises :class:`DescriptionError` naming the file and field.
        FileNotFoundError: A path-like ``name`` (with a ``/`` or ending in ``.json``)
            whose description is missing.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, (str, os.PathLike)) and str(name):
        path = description_path(name)
        if path is not None:
            return load_description(path)
        if _looks_like_path(str(name)):
            raise FileNotFoundError(
                f"No dataset description at {name}: expected {DESCRIPTION_FILE} in "
                f"that folder (written by nasseg-build-data) or the path of one.")
    raise ValueError(f"Unknown dataset {name!r}; known datasets: "
                     f"{', '.join(list_datasets())} (or the folder of a "
                     f"{DESCRIPTION_FILE} written by nasseg-build-data).")


def list_datasets() -> Tuple[str, ...]:
    """Names of all registered datasets, sorted."""
    return tuple(sorted(_REGISTRY))


# --------------------------------------------------------------------------------------
# Description files: a user's dataset without code.
# --------------------------------------------------------------------------------------
class DescriptionError(ValueError):
    """A dataset description is unreadable or inconsistent; the message names the file
    and the field."""


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.endswith(".json")


def description_path(name) -> Optional[str]:
    """The description file ``name`` designates, or None when there is none.

    ``name`` is a description file or a folder holding :data:`DESCRIPTION_FILE`;
    local paths are made absolute.
    """
    name = fileio.abspath(os.fspath(name))
    if fileio.isdir(name):
        inside = os.path.join(name, DESCRIPTION_FILE)
        return inside if fileio.exists(inside) else None
    return name if fileio.exists(name) else None


def generated_palette(num_classes: int) -> Tuple[RGB, ...]:
    """A deterministic palette of ``num_classes`` distinct, non-black colours.

    Hues step by the golden angle (each new colour far from the previous ones), with
    three saturation/value levels cycling; black stays free for ignored pixels.
    """
    colours, seen = [], set()
    index = 0
    while len(colours) < num_classes:
        level = index % 3
        hue = (index * 0.6180339887498949) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, (0.85, 0.55, 0.95)[level],
                                  (0.95, 0.8, 0.6)[level])
        colour = tuple(int(round(c * 255)) for c in rgb)
        index += 1
        if colour not in seen and colour != (0, 0, 0):
            seen.add(colour)
            colours.append(colour)
    return tuple(colours)


def default_class_names(num_classes: int) -> Tuple[str, ...]:
    """``class_0 .. class_{n-1}``: names for a dataset given without names."""
    return tuple(f"class_{i}" for i in range(num_classes))


def check_class_names(names: Sequence[str], num_classes: int, where: str) -> Tuple[str, ...]:
    """``names`` as a tuple once they fit: one non-empty, unique name per class.

    Raises:
        ValueError: Naming ``where`` (e.g. the names file) and the problem.
    """
    names = tuple(names)
    if len(names) != num_classes:
        raise ValueError(f"{where}: {len(names)} class names for {num_classes} classes.")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: the name of class {index} is empty.")
    first = {}
    for index, name in enumerate(names):
        if name in first:
            raise ValueError(f"{where}: class name {name!r} is given twice (classes "
                             f"{first[name]} and {index}).")
        first[name] = index
    return names


def check_palette(palette: Sequence[Sequence[int]], num_classes: int,
                  where: str) -> Tuple[RGB, ...]:
    """``palette`` as a tuple of ``(r, g, b)`` once it has one 0..255 colour per class.

    Raises:
        ValueError: Naming ``where`` and the bad colour.
    """
    palette = list(palette)
    if len(palette) != num_classes:
        raise ValueError(f"{where}: {len(palette)} colours for {num_classes} classes.")
    colours = []
    for index, colour in enumerate(palette):
        if (not isinstance(colour, (list, tuple)) or len(colour) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                           for c in colour)):
            raise ValueError(f"{where}: colour of class {index} must be three integers "
                             f"0..255, got {colour!r}.")
        colours.append(tuple(colour))
    return tuple(colours)


def make_description(info: DatasetInfo, splits: Mapping[str, Mapping[str, object]]) -> dict:
    """The JSON object of a description file (the module docstring shows its format).

    Args:
        info: Name, classes, names, palette, ignore label and prose of the dataset.
        splits: ``{split: {"shards": pattern relative to the description's folder,
            "num_records": int, "pixel_counts": [per class], "ignored_pixels": int}}``.
    """
    return {
        "format": DESCRIPTION_FORMAT,
        "version": DESCRIPTION_VERSION,
        "name": info.name,
        "num_classes": info.num_classes,
        "ignore_label": info.ignore_label,
        "class_names": list(info.class_names),
        "palette": [list(colour) for colour in info.palette],
        "splits": {split: {"shards": str(entry["shards"]),
                           "num_records": int(entry["num_records"]),
                           "pixel_counts": [int(c) for c in entry["pixel_counts"]],
                           "ignored_pixels": int(entry.get("ignored_pixels", 0))}
                   for split, entry in splits.items()},
        "description": info.description,
        "label_mapping": info.label_mapping,
    }


def write_description(folder: str, description: dict) -> str:
    """Writes ``description`` to ``folder/dataset.json`` atomically; returns the path.

    The object is checked first (:func:`parse_description`), so a file this writes
    always loads.
    """
    path = os.path.join(folder, DESCRIPTION_FILE)
    parse_description(description, path)
    fileio.atomic_write_text(path, _json_text(description) + "\n")
    return path


def _json_text(value, indent=""):
    """JSON with objects one key a line and lists of plain values on one line (a
    palette: one colour a line), for a file people read and edit."""
    if isinstance(value, dict):
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" if items else "{}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        inner = indent + "  "
        return ("[\n" + ",\n".join(inner + _json_text(v, inner) for v in value)
                + "\n" + indent + "]")
    return json.dumps(value)


def load_description(path: str) -> DatasetInfo:
    """Reads the description file ``path`` as a :class:`DatasetInfo`.

    Shard patterns become absolute (relative to the file's folder).

    Raises:
        FileNotFoundError: ``path`` is missing.
        DescriptionError: Bad JSON, a missing or wrong field, a newer format version;
            the message names the file and the field.
    """
    path = fileio.abspath(os.fspath(path))
    try:
        text = fileio.read_text(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Dataset description {path} not found.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DescriptionError(f"Dataset description {path}: cannot read it "
                               f"({error}).") from None
    try:
        obj = json.loads(text)
    except ValueError as error:
        raise DescriptionError(f"Dataset description {path}: not valid JSON "
                               f"({error}).") from None
    return parse_description(obj, path)


def _field(obj, key, kind, where, kind_text):
    if key not in obj:
        raise DescriptionError(f"{where}: missing field {key!r}.")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DescriptionError(f"{where}: field {key!r} must be {kind_text}, got "
                               f"{value!r}.")
    return value


def parse_description(obj, path: str) -> DatasetInfo:
    """Checks a description object (read from ``path``) and returns its DatasetInfo.

    Raises:
        DescriptionError: Naming ``path`` and the bad field.
    """
    where = f"Dataset description {path}"
    if not isinstance(obj, dict):
        raise DescriptionError(f"{where}: expected a JSON object, got "
                               f"{type(obj).__name__}.")
    if obj.get("format") != DESCRIPTION_FORMAT:
        raise DescriptionError(f"{where}: field 'format' must be "
                               f"{DESCRIPTION_FORMAT!r}, got {obj.get('format')!r}.")
    version = _field(obj, "version", int, where, "an integer")
    if version > DESCRIPTION_VERSION or version < 1:
        raise DescriptionError(f"{where}: format version {version} is not readable by "
                               f"this nasseg_tf (it reads version {DESCRIPTION_VERSION}).")
    name = _field(obj, "name", str, where, "a string")
    num_classes = _field(obj, "num_classes", int, where, "an integer")
    if not 1 <= num_classes <= 256:
        raise DescriptionError(f"{where}: field 'num_classes' must be 1..256, got "
                               f"{num_classes}.")
    ignore_label = _field(obj, "ignore_label", int, where, "an integer")
    try:
        class_names = check_class_names(_field(obj, "class_names", list, where, "a list"),
                                        num_classes, f"{where}: field 'class_names'")
        palette = check_palette(_field(obj, "palette", list, where, "a list"),
                                num_classes, f"{where}: field 'palette'")
    except ValueError as error:
        raise DescriptionError(str(error)) from None
    if 0 <= ignore_label < num_classes:
        raise DescriptionError(f"{where}: field 'ignore_label' ({ignore_label}) "
                               f"collides with a class index (0..{num_classes - 1}).")
    splits = _field(obj, "splits", dict, where, "an object {split: {...}}")
    folder = os.path.dirname(path)
    sizes, patterns, counts = [], [], []
    for split, entry in splits.items():
        at = f"{where}: splits.{split}"
        if not isinstance(entry, dict):
            raise DescriptionError(f"{at} must be an object, got {entry!r}.")
        shards = _field(entry, "shards", str, at, "a glob pattern")
        if not shards:
            raise DescriptionError(f"{at}: field 'shards' is empty.")
        num_records = _field(entry, "num_records", int, at, "an integer")
        pixels = _field(entry, "pixel_counts", list, at, "a list")
        if len(pixels) != num_classes or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in pixels):
            raise DescriptionError(f"{at}: field 'pixel_counts' must hold {num_classes} "
                                   f"non-negative integers (one per class), got "
                                   f"{len(pixels)} values.")
        if num_records < 0:
            raise DescriptionError(f"{at}: field 'num_records' is negative.")
        absolute = shards if fileio.is_remote(shards) or os.path.isabs(shards) else (
            os.path.join(folder, shards))
        sizes.append((split, num_records))
        patterns.append((split, absolute))
        counts.append((split, tuple(pixels)))
    for key in ("description", "label_mapping"):
        if not isinstance(obj.get(key, ""), str):
            raise DescriptionError(f"{where}: field {key!r} must be a string.")
    return DatasetInfo(
        name=name, num_classes=num_classes, ignore_label=ignore_label,
        class_names=class_names, palette=palette, splits=tuple(sizes),
        label_mapping=obj.get("label_mapping") or "labels are stored as class indices",
        description=obj.get("description", ""), path=path, patterns=tuple(patterns),
        pixel_counts=tuple(counts))


# --------------------------------------------------------------------------------------
# Cityscapes: the 19 evaluation classes ("trainIds") and the official colours.
# --------------------------------------------------------------------------------------
CITYSCAPES_CLASSES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)

# Official labelId -> trainId table (cityscapesScripts labels.py). labelIds missing
# here (unlabeled, ego vehicle, parking, guard rail, caravan, ...) map to 255.
CITYSCAPES_LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# --------------------------------------------------------------------------------------
# PASCAL VOC 2012: background + 20 object classes, the devkit colour map.
# --------------------------------------------------------------------------------------
PASCAL_VOC_CLASSES = (
    ("background", (0, 0, 0)),
    ("aeroplane", (128, 0, 0)),
    ("bicycle", (0, 128, 0)),
    ("bird", (128, 128, 0)),
    ("boat", (0, 0, 128)),
    ("bottle", (128, 0, 128)),
    ("bus", (0, 128, 128)),
    ("car", (128, 128, 128)),
    ("cat", (64, 0, 0)),
    ("chair", (192, 0, 0)),
    ("cow", (64, 128, 0)),
    ("diningtable", (192, 128, 0)),
    ("dog", (64, 0, 128)),
    ("horse", (192, 0, 128)),
    ("motorbike", (64, 128, 128)),
    ("person", (192, 128, 128)),
    ("pottedplant", (0, 64, 0)),
    ("sheep", (128, 64, 0)),
    ("sofa", (0, 192, 0)),
    ("train", (128, 192, 0)),
    ("tvmonitor", (0, 64, 128)),
)

# PASCAL-Person-Part: body parts on VOC person images, drawn with the first seven
# colours of the VOC colour map (its annotations are VOC-style palette PNGs).
PASCAL_PERSON_PART_CLASSES = tuple(
    (name, colour) for name, (_, colour) in zip(
        ("background", "head", "torso", "upper arm", "lower arm", "upper leg", "lower leg"),
        PASCAL_VOC_CLASSES))

# --------------------------------------------------------------------------------------
# ADE20K (SceneParsing, ADEChallengeData2016): 150 classes in objectInfo150 order.
# --------------------------------------------------------------------------------------
ADE20K_CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain",
    "plant", "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house",
    "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock",
    "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column",
    "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop",
    "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent",
    "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)

ADE20K_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)

# --------------------------------------------------------------------------------------
# demo: the procedural street scenes of nasseg_tf.data.demo (Cityscapes colours).
# --------------------------------------------------------------------------------------
DEMO_CLASSES = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("vegetation", (107, 142, 35)),
    ("sky", (70, 130, 180)),
    ("car", (0, 0, 142)),
    ("person", (220, 20, 60)),
    ("pole", (153, 153, 153)),
)


def _names(classes):
    return tuple(name for name, _ in classes)


def _colours(classes):
    return tuple(colour for _, colour in classes)


CITYSCAPES = register_dataset(DatasetInfo(
    name="cityscapes",
    num_classes=19,
    class_names=_names(CITYSCAPES_CLASSES),
    palette=_colours(CITYSCAPES_CLASSES),
    splits=(("train", 2975), ("val", 500), ("test", 1525)),
    label_mapping=("gtFine labelIds (0..33) map to the 19 trainIds through "
                   "CITYSCAPES_LABEL_ID_TO_TRAIN_ID; every other labelId maps to 255."),
    description="Cityscapes fine annotations, 1024x2048 street scenes.",
))

PASCAL_VOC2012 = register_dataset(DatasetInfo(
    name="pascal_voc2012",
    num_classes=21,
    class_names=_names(PASCAL_VOC_CLASSES),
    palette=_colours(PASCAL_VOC_CLASSES),
    splits=(("train", 1464), ("train_aug", 10582), ("val", 1449)),
    label_mapping=("SegmentationClass palette PNGs: the palette indices are the labels "
                   "(0 = background); 255 (object boundaries) stays ignore. "
                   "train_aug adds the SBD annotations (SegmentationClassAug)."),
    description="PASCAL VOC 2012 segmentation, with the SBD-augmented train_aug split.",
))

ADE20K = register_dataset(DatasetInfo(
    name="ade20k",
    num_classes=150,
    class_names=ADE20K_CLASS_NAMES,
    palette=ADE20K_PALETTE,
    splits=(("train", 20210), ("val", 2000)),
    label_mapping=("ADEChallengeData2016 annotations store 0 for 'other objects' and "
                   "k = 1..150 for the classes: raw 0 -> 255 (ignore), raw k -> k - 1."),
    description="ADE20K SceneParsing benchmark (150 classes).",
))

PASCAL_PERSON_PART = register_dataset(DatasetInfo(
    name="pascal_person_part",
    num_classes=7,
    class_names=_names(PASCAL_PERSON_PART_CLASSES),
    palette=_colours(PASCAL_PERSON_PART_CLASSES),
    splits=(("train", 1716), ("val", 1817)),
    label_mapping="palette PNG indices are the labels (0 = background); 255 is ignore.",
    description="PASCAL-Person-Part: person body parts on PASCAL VOC 2010 images.",
))

DEMO = register_dataset(DatasetInfo(
    name="demo",
    num_classes=len(DEMO_CLASSES),
    class_names=_names(DEMO_CLASSES),
    palette=_colours(DEMO_CLASSES),
    label_mapping="generated labels are class indices; 255 is never produced.",
    description="Procedural street scenes generated on first use (nasseg_tf.data.demo).",
))
