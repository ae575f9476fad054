r"""Converts a raw segmentation dataset into sharded DeepLab TFRecords.

Usage:
    python tools/build_data.py --dataset=cityscapes --root=/data/cityscapes \
        --output_dir=/data/cityscapes/tfrecord --num_shards=10
    python tools/build_data.py --dataset=generic --root=/data/mine --num_classes=5 \
        --splits=train,val --output_dir=/data/mine/tfrecord
    nasseg-build-data --dataset=generic --root=/data/mine \
        --class_names=/data/mine/classes.txt --output_dir=/data/mine/tfrecord

The generic layout is ``ROOT/<split>/images/<name>.{jpg,jpeg,png}`` with
``ROOT/<split>/labels/<name>.png`` (single-channel PNGs whose values are the class
indices; ``--ignore_label`` marks unlabelled pixels). ``--class_names`` is a text file
with one class name per line, in label order (it also gives ``--num_classes``);
``--palette`` one colour per line (``R G B``, ``R,G,B`` or ``#RRGGBB``).

Beside the shards the tool writes ``OUTPUT_DIR/dataset.json``, the dataset
description (classes, names, palette, ignore label, shards, record and pixel counts);
train on it with ``--gin_bindings="Data.dataset = 'OUTPUT_DIR'"``.

Greyscale source images of more than 8 bits (16-bit PNGs) are reduced to 8 bits as
``--high_bit_depth`` says (``scale``: value / 257; ``stretch``: each image's min..max
to 0..255; ``refuse``: stop with an error naming the file); how many were reduced is
printed once at the end.

Bad input (a missing file, a label outside the classes, ...) stops the tool with
``nasseg-build-data: error: <message naming the file>`` and exit code 2; nothing is
installed in ``--output_dir`` then.

Flags are defined by :func:`run` (not at import), so importing this module next to
other command-line modules in one process cannot collide on flag names.
"""

from typing import Dict, List

from absl import flags

from nasseg_tf.cli import common
from nasseg_tf.data import build_data
from nasseg_tf.data import datasets

REQUIRED_FLAGS = ("dataset", "root", "output_dir")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the tool's flags on ``flag_values``."""
    flags.DEFINE_enum("dataset", None, build_data.list_converters(), "Raw dataset layout.",
                      flag_values=flag_values)
    flags.DEFINE_string("root", None, "Root folder of the raw dataset.",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where the TFRecord shards are written.",
                        flag_values=flag_values)
    flags.DEFINE_list("splits", None, "Splits to convert (default: the layout's own).",
                      flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 4, "Shards per split.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("num_classes", None, "Number of classes (generic layout only; "
                         "default: the number of --class_names).", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("class_names", None, "Text file of class names, one per line in "
                        "label order (generic layout; default class_0, class_1, ...).",
                        flag_values=flag_values)
    flags.DEFINE_string("palette", None, "Text file of class colours, one per line: "
                        "'R G B', 'R,G,B' or '#RRGGBB' (generic layout; default: "
                        "generated).", flag_values=flag_values)
    flags.DEFINE_string("name", None, "The dataset's name in its description (default: "
                        "the root folder's name).", flag_values=flag_values)
    flags.DEFINE_integer("ignore_label", 255, "Label value meaning 'ignore'.",
                         flag_values=flag_values)
    flags.DEFINE_bool("verify", True, "Re-read and check every record before installing.",
                      flag_values=flag_values)
    flags.DEFINE_enum("high_bit_depth", "scale", build_data.HIGH_BIT_DEPTH_MODES,
                      "Greyscale images of more than 8 bits (e.g. 16-bit PNG): 'scale' "
                      "maps the full range linearly to 0..255 (16-bit value / 257), "
                      "'stretch' maps each image's min..max to 0..255, 'refuse' stops "
                      "with an error naming the file.", flag_values=flag_values)
    flags.mark_flags_as_required(REQUIRED_FLAGS, flag_values=flag_values)


def convert(dataset, root, output_dir, splits=None, num_shards=4, num_classes=None,
            ignore_label=255, verify=True, high_bit_depth="scale", class_names=None,
            palette=None, name=None, report=print) -> Dict[str, List[str]]:
    """The tool's body: runs the conversion; returns the shards.

    ``class_names`` and ``palette`` are files (:func:`build_data.read_class_names`,
    :func:`build_data.read_palette`), checked before anything is written. ``report``
    gets one line per split, the description's path and, when images were reduced
    from a high bit depth, one summary line.
    """
    names = colours = None
    if class_names:
        names = build_data.read_class_names(class_names)
        datasets.check_class_names(names, num_classes or len(names),
                                   f"Class names file {class_names}")
    if palette:
        colours = build_data.read_palette(palette)
        count = num_classes or (len(names) if names else None)
        if count is not None:
            datasets.check_palette(colours, count, f"Palette file {palette}")
    summary = build_data.ConversionSummary()
    shards = build_data.build_tfrecords(
        dataset, root, output_dir, splits=splits, num_shards=num_shards,
        num_classes=num_classes, ignore_label=ignore_label, verify=verify,
        high_bit_depth=high_bit_depth, summary=summary, name=name, class_names=names,
        palette=colours)
    info = datasets.load_description(summary.description_path)
    records = info.split_sizes
    for split, paths in shards.items():
        report(f"{split}: {len(paths)} shards, {records[split]} records in {output_dir}")
    report(f"dataset description: {summary.description_path} ({info.num_classes} "
           f"classes: {', '.join(info.class_names[:8])}"
           f"{', ...' if info.num_classes > 8 else ''})")
    if summary.describe():
        report(summary.describe())
    return shards


main = common.make_main("nasseg-build-data", convert)
"""absl main: converts with the tool's flags; bad input exits with status 2."""


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
