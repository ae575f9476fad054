r"""Converts a raw segmentation dataset into sharded DeepLab TFRecords.

Usage:
    python tools/build_data.py --dataset=cityscapes --root=/data/cityscapes \
        --output_dir=/data/cityscapes/tfrecord --num_shards=10
    python tools/build_data.py --dataset=generic --root=/data/mine --num_classes=5 \
        --splits=train,val --output_dir=/data/mine/tfrecord

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
    flags.DEFINE_integer("num_classes", None, "Number of classes (generic layout only).",
                         flag_values=flag_values)
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
            ignore_label=255, verify=True, high_bit_depth="scale", report=print
            ) -> Dict[str, List[str]]:
    """The tool's body: runs the conversion; returns the shards.

    ``report`` gets one line per split and, when images were reduced from a high bit
    depth, one summary line.
    """
    summary = build_data.ConversionSummary()
    shards = build_data.build_tfrecords(
        dataset, root, output_dir, splits=splits, num_shards=num_shards,
        num_classes=num_classes, ignore_label=ignore_label, verify=verify,
        high_bit_depth=high_bit_depth, summary=summary)
    for split, paths in shards.items():
        report(f"{split}: {len(paths)} shards in {output_dir}")
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
