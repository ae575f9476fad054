"""Registry of segmentation dataset descriptions.

A :class:`DatasetInfo` is plain data: the number of classes, the ignore label, the
class names and the colour palette used to draw predictions. The entries below are
the datasets the papers report on (SPEC §4) plus the procedural ``demo`` dataset
(:mod:`nasseg_tf.data.demo`).

Example:
    >>> info = get_dataset_info("cityscapes")
    >>> info.num_classes, info.class_names[0]
    (19, 'road')
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

RGB = Tuple[int, int, int]

DEFAULT_IGNORE_LABEL = 255


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
    """

    name: str
    num_classes: int
    ignore_label: int = DEFAULT_IGNORE_LABEL
    class_names: Tuple[str, ...] = ()
    palette: Tuple[RGB, ...] = ()
    splits: Tuple[Tuple[str, int], ...] = ()
    label_mapping: str = "labels are stored as class indices"
    description: str = ""

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
    """Returns the registered description called ``name``.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the known datasets.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; known datasets: "
                         f"{', '.join(list_datasets())}.") from None


def list_datasets() -> Tuple[str, ...]:
    """Names of all registered datasets, sorted."""
    return tuple(sorted(_REGISTRY))


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
