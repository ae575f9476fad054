"""Converters from the raw dataset layouts to sharded DeepLab TFRecords.

Each converter lists ``(image, label)`` file pairs for a split and says how raw label
values become training labels; :func:`build_tfrecords` does the rest. Registered
converters (:func:`list_converters`):

- ``generic``: ``{root}/{split}/images/*.{jpg,jpeg,png}`` with
  ``{root}/{split}/labels/{stem}.png`` (labels are class indices; needs
  ``num_classes``).
- ``cityscapes``: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
  ``gtFine/{split}/{city}/*_gtFine_labelIds.png``; labelIds map to the 19 trainIds
  (all other ids to 255).
- ``pascal_voc2012``: ``JPEGImages/{id}.jpg`` with ``SegmentationClass/{id}.png``
  (palette PNGs: the palette indices are the labels, 255 stays ignore), ids from
  ``ImageSets/Segmentation/{split}.txt``; ``pascal_voc2012_aug`` reads
  ``SegmentationClassAug`` instead (for ``train_aug``).
- ``ade20k``: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` with
  ``annotations/{training,validation}/*.png``; raw 0 ("other") -> 255, k -> k - 1.

Images that are not 8-bit RGB JPEG/PNG are converted to RGB PNG. Greyscale images of
more than 8 bits (PIL modes ``I;16``/``I;16B``/``I;16L``/``I;16N``, 32-bit integer
``I``, float ``F``) are reduced to 8 bits as ``high_bit_depth`` says (``"scale"``,
``"stretch"`` or ``"refuse"``; see :func:`reduce_bit_depth`) instead of being
saturated by a plain RGB conversion; a :class:`ConversionSummary` counts them.

Beside the shards the conversion writes a dataset description, ``dataset.json``
(:mod:`nasseg_tf.data.datasets`: name, classes, class names, palette, ignore label,
each split's shard pattern, record count and labelled pixels per class, counted while
converting), so that ``Data.dataset = '<output_dir>'`` trains on it without code. For
``generic`` the names come from ``class_names`` (default ``class_0..``) and the colours
from ``palette`` (default :func:`~nasseg_tf.data.datasets.generated_palette`); the
other layouts take both from the registry. Converting some splits into a folder that
already describes others keeps those others when the classes agree.

Every file is checked before anything is written: a missing file, an image/label
size mismatch or a label value outside the classes raises an error naming the
file. Shards are written to a temporary folder inside ``output_dir``
(:func:`nasseg_tf.fileio.temp_dir`: a killed build's folder is recognised and removed by
the next build) and moved into place only when every split succeeded, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from nasseg_tf import fileio
from nasseg_tf.data import datasets
from nasseg_tf.data import tfrecord

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}

HIGH_BIT_DEPTH_MODES = ("scale", "stretch", "refuse")
"""Ways to reduce a high-bit-depth greyscale image to 8 bits (:func:`reduce_bit_depth`)."""

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
HIGH_BIT_DEPTH_IMAGE_MODES = SIXTEEN_BIT_MODES + ("I", "F")
"""PIL modes of greyscale images with more than 8 bits per pixel."""

_METHOD_TEXT = {
    "scale": "scaling the full range linearly (16-bit value / 257, float value x 255)",
    "stretch": "stretching each image's min..max to 0..255",
}


class ConversionError(tfrecord.RecordError):
    """A source image or label cannot be converted; the message names the file."""


@dataclasses.dataclass
class ConversionSummary:
    """What a conversion changed, reported once per run (e.g. by the CLI).

    Attributes:
        high_bit_depth: How high-bit-depth greyscale images were reduced to 8 bits.
        num_images: Images read.
        high_bit_depth_images: ``{PIL mode: count}`` of the images reduced to 8 bits.
        description_path: The dataset description written (``dataset.json``).
    """

    high_bit_depth: str = "scale"
    num_images: int = 0
    high_bit_depth_images: Dict[str, int] = dataclasses.field(default_factory=dict)
    description_path: str = ""

    @property
    def num_reduced(self) -> int:
        """Number of images reduced from a high bit depth to 8 bits."""
        return sum(self.high_bit_depth_images.values())

    def describe(self) -> str:
        """One line for the user; empty when nothing was reduced."""
        if not self.num_reduced:
            return ""
        modes = ", ".join(f"{mode}: {count}"
                          for mode, count in sorted(self.high_bit_depth_images.items()))
        return (f"{self.num_reduced} of {self.num_images} images were high-bit-depth "
                f"greyscale ({modes}) and were converted to 8-bit RGB by "
                f"{_METHOD_TEXT[self.high_bit_depth]} (high_bit_depth="
                f"{self.high_bit_depth!r}).")


@dataclasses.dataclass(frozen=True)
class SourceExample:
    """One image/label pair on disk; ``name`` becomes ``image/filename``."""

    name: str
    image_path: str
    label_path: str


ListFn = Callable[[str, str], List[SourceExample]]


@dataclasses.dataclass(frozen=True)
class Converter:
    """How to read one raw dataset layout.

    Attributes:
        name: Registry key (the ``--dataset`` flag).
        list_examples: ``(root, split) -> [SourceExample]``; raises
            ``FileNotFoundError`` naming what is missing.
        dataset: Key of the :class:`~nasseg_tf.data.datasets.DatasetInfo` giving
            ``num_classes``; None when the user must pass ``num_classes``.
        label_lut: 256-entry ``uint8`` table from raw label values to labels, or
            None when raw values are the labels.
        default_splits: Splits converted when none are given.
    """

    name: str
    list_examples: ListFn
    dataset: Optional[str] = None
    label_lut: Optional[np.ndarray] = dataclasses.field(default=None, compare=False)
    default_splits: Tuple[str, ...] = ("train", "val")


_CONVERTERS: Dict[str, Converter] = {}


def register_converter(converter: Converter) -> Converter:
    """Adds ``converter`` to the registry (its name must be new)."""
    if converter.name in _CONVERTERS:
        raise ValueError(f"Converter {converter.name!r} is already registered.")
    _CONVERTERS[converter.name] = converter
    return converter


def get_converter(name: str) -> Converter:
    """Returns the converter called ``name``; unknown names list the known ones."""
    try:
        return _CONVERTERS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset layout {name!r}; known layouts: "
                         f"{', '.join(list_converters())}.") from None


def list_converters() -> Tuple[str, ...]:
    """Names of the registered converters, sorted."""
    return tuple(sorted(_CONVERTERS))


# ---------------------------------------------------------------------------------------
# Listing files in each layout
# ---------------------------------------------------------------------------------------
def _require_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Missing directory {path}.")
    return path


def _require_file(path: str, needed_by: str = "") -> str:
    if not os.path.isfile(path):
        suffix = f" (needed by {needed_by})" if needed_by else ""
        raise FileNotFoundError(f"Missing file {path}{suffix}.")
    return path


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _list_generic(root: str, split: str) -> List[SourceExample]:
    image_dir = _require_dir(os.path.join(root, split, "images"))
    label_dir = _require_dir(os.path.join(root, split, "labels"))
    images = sorted(p for p in glob.glob(os.path.join(image_dir, "*"))
                    if p.lower().endswith(IMAGE_EXTENSIONS))
    return [SourceExample(_stem(p), p,
                          _require_file(os.path.join(label_dir, _stem(p) + ".png"), p))
            for p in images]


_CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
_CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


def _list_cityscapes(root: str, split: str) -> List[SourceExample]:
    image_dir = _require_dir(os.path.join(root, "leftImg8bit", split))
    label_dir = _require_dir(os.path.join(root, "gtFine", split))
    examples = []
    for image in sorted(glob.glob(os.path.join(image_dir, "*", "*" + _CITYSCAPES_IMAGE_SUFFIX))):
        city = os.path.basename(os.path.dirname(image))
        prefix = os.path.basename(image)[: -len(_CITYSCAPES_IMAGE_SUFFIX)]
        label = os.path.join(label_dir, city, prefix + _CITYSCAPES_LABEL_SUFFIX)
        examples.append(SourceExample(prefix, image, _require_file(label, image)))
    return examples


def _voc_lister(label_dir_name: str) -> ListFn:
    def list_voc(root: str, split: str) -> List[SourceExample]:
        list_file = _require_file(os.path.join(root, "ImageSets", "Segmentation",
                                               f"{split}.txt"))
        with open(list_file, encoding="utf-8") as handle:
            ids = [line.split()[0] for line in handle if line.strip()]
        return [SourceExample(
            i,
            _require_file(os.path.join(root, "JPEGImages", f"{i}.jpg"), list_file),
            _require_file(os.path.join(root, label_dir_name, f"{i}.png"), list_file))
            for i in ids]
    return list_voc


_ADE20K_SPLITS = {"train": "training", "training": "training",
                  "val": "validation", "validation": "validation"}


def _list_ade20k(root: str, split: str) -> List[SourceExample]:
    if split not in _ADE20K_SPLITS:
        raise ValueError(f"Unknown ADE20K split {split!r}; known: "
                         f"{', '.join(sorted(_ADE20K_SPLITS))}.")
    base = os.path.join(root, "ADEChallengeData2016")
    base = base if os.path.isdir(base) else root
    folder = _ADE20K_SPLITS[split]
    image_dir = _require_dir(os.path.join(base, "images", folder))
    label_dir = _require_dir(os.path.join(base, "annotations", folder))
    return [SourceExample(_stem(p), p,
                          _require_file(os.path.join(label_dir, _stem(p) + ".png"), p))
            for p in sorted(glob.glob(os.path.join(image_dir, "*.jpg")))]


# ---------------------------------------------------------------------------------------
# Label tables
# ---------------------------------------------------------------------------------------
def cityscapes_label_lut() -> np.ndarray:
    """labelId -> trainId table; ids outside the official 19 map to 255."""
    lut = np.full(256, datasets.DEFAULT_IGNORE_LABEL, np.uint8)
    for label_id, train_id in datasets.CITYSCAPES_LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def ade20k_label_lut() -> np.ndarray:
    """Raw 0 ("other objects") -> 255; raw k -> k - 1 (raw values > 150 stay invalid)."""
    lut = np.arange(-1, 255, dtype=np.int32)
    lut[0] = datasets.DEFAULT_IGNORE_LABEL
    return lut.astype(np.uint8)


register_converter(Converter("generic", _list_generic))
register_converter(Converter("cityscapes", _list_cityscapes, "cityscapes",
                             cityscapes_label_lut()))
register_converter(Converter("pascal_voc2012", _voc_lister("SegmentationClass"),
                             "pascal_voc2012"))
register_converter(Converter("pascal_voc2012_aug", _voc_lister("SegmentationClassAug"),
                             "pascal_voc2012", default_splits=("train_aug", "val")))
register_converter(Converter("ade20k", _list_ade20k, "ade20k", ade20k_label_lut()))


# ---------------------------------------------------------------------------------------
# Converting one pair
# ---------------------------------------------------------------------------------------
def _open(path: str) -> Image.Image:
    _require_file(path)
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:  # PIL raises several types for unreadable files.
        raise ConversionError(f"Cannot read image file {path}: {error}") from error
    return image


def _check_high_bit_depth(high_bit_depth: str) -> None:
    if high_bit_depth not in HIGH_BIT_DEPTH_MODES:
        raise ValueError(f"high_bit_depth must be one of "
                         f"{', '.join(HIGH_BIT_DEPTH_MODES)}, got {high_bit_depth!r}.")


def reduce_bit_depth(image: Image.Image, path: str,
                     high_bit_depth: str = "scale") -> np.ndarray:
    """Reduces a high-bit-depth greyscale image to ``uint8 [H, W]``.

    Args:
        image: PIL image in one of :data:`HIGH_BIT_DEPTH_IMAGE_MODES`.
        path: Its file, for error messages.
        high_bit_depth: ``"scale"``: a fixed linear map of the full range — 16-bit
            modes ``round(value / 257)`` (0..65535 to 0..255); 32-bit ``I`` the same
            when its values lie in 0..65535; float ``F`` ``round(value * 255)`` when
            its values lie in [0, 1]; other values are refused. ``"stretch"``: this
            image's min..max to 0..255 (a constant image becomes 0). ``"refuse"``:
            raise.

    Raises:
        ConversionError: Naming the file and its mode, for ``"refuse"`` or values
            ``"scale"`` cannot map (or non-finite floats).
    """
    _check_high_bit_depth(high_bit_depth)
    mode = image.mode
    if high_bit_depth == "refuse":
        raise ConversionError(f"Image {path} is high-bit-depth greyscale (mode {mode!r}); "
                              f"use high_bit_depth 'scale' or 'stretch' to convert it "
                              f"to 8 bits.")
    values = np.asarray(image).astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"Image {path} (mode {mode!r}) has NaN or infinite values.")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high_bit_depth == "stretch":
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    elif mode == "F":
        if low < 0 or high > 1:
            raise ConversionError(f"Float image {path} has values in [{low:g}, {high:g}]; "
                                  f"high_bit_depth 'scale' needs [0, 1] (use 'stretch').")
        scaled = values * 255.0
    else:
        if low < 0 or high > 65535:
            raise ConversionError(f"Image {path} (mode {mode!r}) has values in "
                                  f"[{low:.0f}, {high:.0f}], beyond 16 bits; "
                                  f"high_bit_depth 'scale' needs 0..65535 (use 'stretch').")
        scaled = values / 257.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_image(path: str, high_bit_depth: str = "scale",
               summary: Optional[ConversionSummary] = None
               ) -> Tuple[bytes, str, Tuple[int, int]]:
    """Returns ``(encoded bytes, format, (height, width))`` of an RGB image.

    RGB JPEG and PNG files are stored byte for byte; high-bit-depth greyscale images
    are reduced to 8 bits by :func:`reduce_bit_depth`; anything else is converted to
    RGB. Converted images are re-encoded as PNG.

    Args:
        path: Image file.
        high_bit_depth: See :func:`reduce_bit_depth`.
        summary: Counts the image (and how it was converted) when given.
    """
    image = _open(path)
    size = (image.height, image.width)
    if summary is not None:
        summary.num_images += 1
    if image.format in _KEPT_FORMATS and image.mode == "RGB":
        with open(path, "rb") as handle:
            return handle.read(), _KEPT_FORMATS[image.format], size
    if image.mode in HIGH_BIT_DEPTH_IMAGE_MODES:
        grey = reduce_bit_depth(image, path, high_bit_depth)
        if summary is not None:
            summary.high_bit_depth_images[image.mode] = (
                summary.high_bit_depth_images.get(image.mode, 0) + 1)
        return tfrecord.encode_png(np.repeat(grey[..., None], 3, axis=-1)), "png", size
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue(), "png", size


def read_label(path: str) -> np.ndarray:
    """Reads a single-channel label PNG (palette or greyscale) as ``uint8 [H, W]``.

    For palette PNGs the pixel values are the palette indices, not the colours.
    """
    image = _open(path)
    if image.mode not in ("P", "L", "I", "I;16"):
        raise ConversionError(f"Label {path} has mode {image.mode!r}; expected a "
                              f"single-channel (palette or greyscale) PNG.")
    label = np.asarray(image)
    if label.max(initial=0) > 255:
        raise ConversionError(f"Label {path} has values above 255 "
                              f"(max {int(label.max())}).")
    return label.astype(np.uint8)


def convert_example(source: SourceExample, num_classes: int, ignore_label: int = 255,
                    label_lut: Optional[np.ndarray] = None, *,
                    high_bit_depth: str = "scale",
                    summary: Optional[ConversionSummary] = None,
                    pixel_counts: Optional[np.ndarray] = None):
    """Reads, maps and checks one pair and returns its ``tf.train.Example``.

    ``high_bit_depth`` and ``summary`` are passed to :func:`read_image`;
    ``pixel_counts`` (int64 ``[256]``), when given, gets the pixels of each label value.

    Raises:
        FileNotFoundError: Naming a missing file.
        ConversionError: Naming the file on a size mismatch or an unreadable file.
        tfrecord.RecordError: Naming the label file on out-of-range label values.
    """
    image_bytes, image_format, size = read_image(source.image_path, high_bit_depth, summary)
    label = read_label(source.label_path)
    if label_lut is not None:
        label = label_lut[label]
    if label.shape != size:
        raise ConversionError(f"Image {source.image_path} is {size[0]}x{size[1]} but its "
                              f"label {source.label_path} is "
                              f"{label.shape[0]}x{label.shape[1]}.")
    tfrecord.check_label_array(label, num_classes, ignore_label, f"Label {source.label_path}")
    if pixel_counts is not None:
        pixel_counts += np.bincount(label.ravel(), minlength=256)
    return tfrecord.make_example(image_bytes, tfrecord.encode_png(label), source.name,
                                 size[0], size[1], image_format=image_format)


# ---------------------------------------------------------------------------------------
# Whole datasets
# ---------------------------------------------------------------------------------------
def _num_classes(converter: Converter, num_classes: Optional[int],
                 class_names: Optional[Sequence[str]] = None) -> int:
    if converter.dataset is not None:
        known = datasets.get_dataset_info(converter.dataset).num_classes
        if num_classes not in (None, known):
            raise ValueError(f"Layout {converter.name!r} has {known} classes, "
                             f"not {num_classes}.")
        return known
    if not num_classes and class_names:
        return len(class_names)
    if not num_classes:
        raise ValueError(f"Layout {converter.name!r} needs num_classes (or class names).")
    return num_classes


def read_class_names(path: str) -> Tuple[str, ...]:
    """The class names in text file ``path``: one per line, in label order.

    Surrounding spaces are stripped and blank lines at the end ignored; an empty line
    before the last name is an error (it would be a class without a name).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: An empty name, naming the file and line.
    """
    _require_file(path)
    with open(path, encoding="utf-8-sig") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"Class names file {path}: line {number} is empty (one "
                             f"name per line, in label order).")
    return tuple(lines)


def read_palette(path: str) -> Tuple[datasets.RGB, ...]:
    """The colours in text file ``path``: one per line as ``R G B``, ``R,G,B`` or
    ``#RRGGBB``, in label order (blank lines at the end ignored).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: A line that is no colour, naming the file and line.
    """
    _require_file(path)
    with open(path, encoding="utf-8-sig") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    colours = []
    for number, line in enumerate(lines, 1):
        try:
            if line.startswith("#") and len(line) == 7:
                colour = tuple(int(line[i:i + 2], 16) for i in (1, 3, 5))
            else:
                colour = tuple(int(v) for v in line.replace(",", " ").split())
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise ValueError
        except ValueError:
            raise ValueError(f"Palette file {path}: line {number} ({line!r}) is not a "
                             f"colour; write 'R G B', 'R,G,B' or '#RRGGBB' with values "
                             f"0..255.") from None
        colours.append(colour)
    return tuple(colours)


def dataset_info_for(converter: Converter, num_classes: Optional[int] = None,
                     ignore_label: int = 255, *, name: Optional[str] = None,
                     class_names: Optional[Sequence[str]] = None,
                     palette: Optional[Sequence[Sequence[int]]] = None,
                     root: str = "") -> datasets.DatasetInfo:
    """The description of what ``converter`` produces, checked before converting.

    Registry layouts take names and colours from the registry (``class_names`` and
    ``palette`` are refused there); ``generic`` from the arguments, defaulting to
    ``class_0..`` and :func:`~nasseg_tf.data.datasets.generated_palette`; ``name``
    defaults to the root folder's name.

    Raises:
        ValueError: Names or colours that do not fit the classes (naming which).
    """
    num_classes = _num_classes(converter, num_classes, class_names)
    if converter.dataset is not None:
        if class_names is not None or palette is not None:
            raise ValueError(f"Layout {converter.name!r} takes its class names and "
                             f"colours from the {converter.dataset!r} registry entry; "
                             f"class_names / palette are for the generic layout.")
        known = datasets.get_dataset_info(converter.dataset)
        return dataclasses.replace(known, name=name or known.name,
                                   ignore_label=ignore_label, splits=())
    names = (datasets.default_class_names(num_classes) if class_names is None else
             datasets.check_class_names(class_names, num_classes, "class names"))
    colours = (datasets.generated_palette(num_classes) if palette is None else
               datasets.check_palette(palette, num_classes, "palette"))
    return datasets.DatasetInfo(
        name=name or os.path.basename(os.path.abspath(root)) or "dataset",
        num_classes=num_classes, ignore_label=ignore_label, class_names=names,
        palette=colours,
        description=f"converted by nasseg-build-data from {os.path.abspath(root)}")


def _write_split(sources: Sequence[SourceExample], tmp_dir: str, split: str,
                 num_shards: int, num_classes: int, ignore_label: int,
                 label_lut: Optional[np.ndarray], high_bit_depth: str,
                 summary: Optional[ConversionSummary]) -> Tuple[List[str], dict]:
    """Writes one split's shards; returns their names and its description entry."""
    counts = np.zeros(256, np.int64)
    with tfrecord.ShardedRecordWriter(tmp_dir, split, num_shards) as writer:
        for source in sources:
            writer.write(convert_example(source, num_classes, ignore_label, label_lut,
                                         high_bit_depth=high_bit_depth, summary=summary,
                                         pixel_counts=counts))
    entry = {"shards": os.path.basename(tfrecord.shard_pattern("", split)),
             "num_records": len(sources),
             "pixel_counts": [int(c) for c in counts[:num_classes]],
             "ignored_pixels": int(counts[ignore_label]) if ignore_label < 256 else 0}
    return [os.path.basename(path) for path in writer.paths], entry


def _kept_splits(output_dir: str, description: dict, written: Sequence[str]) -> dict:
    """The splits of an earlier description in ``output_dir`` that this conversion
    keeps: those not rewritten, when name, classes and ignore label agree."""
    path = os.path.join(output_dir, datasets.DESCRIPTION_FILE)
    if not fileio.exists(path):
        return {}
    try:
        old = fileio.read_json(path)
        datasets.parse_description(old, path)
    except ValueError:  # unreadable: replaced
        return {}
    header = ("name", "num_classes", "ignore_label", "class_names", "palette")
    if any(old.get(key) != description[key] for key in header):
        return {}
    return {split: entry for split, entry in old["splits"].items() if split not in written}


def build_tfrecords(dataset: str, root: str, output_dir: str, *,
                    splits: Optional[Sequence[str]] = None, num_shards: int = 4,
                    num_classes: Optional[int] = None, ignore_label: int = 255,
                    verify: bool = True, high_bit_depth: str = "scale",
                    summary: Optional[ConversionSummary] = None,
                    name: Optional[str] = None,
                    class_names: Optional[Sequence[str]] = None,
                    palette: Optional[Sequence[Sequence[int]]] = None
                    ) -> Dict[str, List[str]]:
    """Converts a dataset layout into ``{split}-NNNNN-of-MMMMM.tfrecord`` shards and
    writes their description ``output_dir/dataset.json``.

    Args:
        dataset: Converter name (see :func:`list_converters`).
        root: Root folder of the raw dataset.
        output_dir: Destination of the shards (created if missing).
        splits: Splits to convert; defaults to the converter's.
        num_shards: Shards per split.
        num_classes: Needed by ``generic`` (or given by ``class_names``); checked
            against the registry otherwise.
        ignore_label: Label value kept as "ignore".
        verify: Re-read every written record with
            :func:`~nasseg_tf.data.tfrecord.validate_records` before installing.
        high_bit_depth: How greyscale images of more than 8 bits become 8-bit:
            ``"scale"`` (default), ``"stretch"`` or ``"refuse"`` (see
            :func:`reduce_bit_depth`).
        summary: Filled with what the conversion changed (e.g. how many images were
            reduced from a high bit depth), to report once per run.
        name, class_names, palette: The description's name, class names and colours
            (see :func:`dataset_info_for`).

    Returns:
        ``{split: [shard paths]}``.

    Raises:
        ValueError: Unknown layout or split, or a bad file (message names it), or
            names / colours that do not fit the classes.
        FileNotFoundError: A missing directory or file (message names it).
    """
    converter = get_converter(dataset)
    info = dataset_info_for(converter, num_classes, ignore_label, name=name,
                            class_names=class_names, palette=palette, root=root)
    num_classes = info.num_classes
    _check_high_bit_depth(high_bit_depth)
    if summary is not None:
        summary.high_bit_depth = high_bit_depth
    splits = tuple(splits or converter.default_splits)
    sources = {split: _nonempty(converter.list_examples(root, split), root, split)
               for split in splits}
    created = not fileio.isdir(output_dir)  # output_dir may be remote (gs://)
    fileio.makedirs(output_dir)
    # Staging folders of builds before the fileio naming record no owner: by age.
    fileio.clean_stale_temps(output_dir, fileio.legacy_mkdtemp_glob(".build_data-"))
    tmp_dir = fileio.temp_dir(os.path.join(output_dir, "build_data"))
    try:
        files, entries = {}, {}
        for split in splits:
            files[split], entries[split] = _write_split(
                sources[split], tmp_dir, split, num_shards, num_classes, ignore_label,
                converter.label_lut, high_bit_depth, summary)
        if verify:
            tfrecord.validate_records(os.path.join(tmp_dir, "*" + tfrecord.TFRECORD_SUFFIX),
                                      num_classes, ignore_label)
        description = datasets.make_description(info, entries)
        description["splits"] = {**_kept_splits(output_dir, description, splits),
                                 **description["splits"]}
        datasets.parse_description(description, output_dir)  # checked before installing
        installed = tfrecord.install_shards(tmp_dir, output_dir, files)
        path = datasets.write_description(output_dir, description)
        if summary is not None:
            summary.description_path = path
    finally:
        fileio.remove_tree(tmp_dir, ignore_errors=True)
        if created and not fileio.listdir(output_dir):
            fileio.remove_tree(output_dir)
    return installed


def _nonempty(sources: List[SourceExample], root: str, split: str) -> List[SourceExample]:
    if not sources:
        raise FileNotFoundError(f"No images found for split {split!r} under {root}.")
    return sources
