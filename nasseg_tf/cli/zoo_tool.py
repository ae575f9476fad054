"""``nasseg-zoo``: list the model zoo and describe a model's size and cost.

Usage:
    nasseg-zoo list
    nasseg-zoo describe autodeeplab_s --num_classes=19 --input_size=1024x2048 [--json]

``describe`` prints trainable params and Multiply-Adds at the input size (see
``nasseg_tf.counting`` for what is counted) beside the paper's figures — a figure is
compared only at the paper's input size and number of classes — and for models
with an ASPP/DPC context module also ``context_params`` / ``context_madds`` (the
module's branches without the concat projection and BN: the basis of DPC Table 1).
"""

import json as _json

from absl import app, flags

from nasseg_tf import counting
from nasseg_tf.cli import common
from nasseg_tf.models import zoo

def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_integer("num_classes", 19, "Number of output classes.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("input_size", "1024x2048", "Input size HxW for Multiply-Adds.",
                        flag_values=flag_values)
    flags.DEFINE_bool("json", False, "Print JSON instead of a table.",
                      flag_values=flag_values)


def parse_size(text):
    """'1024x2048' -> (1024, 2048)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--input_size must look like HxW (e.g. 1024x2048), got {text!r}")
    if h < 1 or w < 1:
        raise ValueError(f"--input_size must be positive, got {text!r}")
    return h, w


def list_text():
    lines = []
    for name in zoo.list_models():
        lines.append(f"{name:24s} {zoo.get_spec(name).description}")
    return "\n".join(lines)


def describe_model(name, num_classes, input_size):
    """The JSON-ready description of zoo model ``name`` (with the paper's figures)."""
    model = zoo.build(name, num_classes=num_classes)
    summary = counting.describe(model, input_size)
    summary["num_classes"] = num_classes
    paper = zoo.get_spec(name).paper
    if paper:
        summary["paper"] = paper
    return summary


#: The input size of a paper's Multiply-Adds where the paper does not state it
#: (Auto-DeepLab, Table 2: a Cityscapes frame is the likely one, SPEC §2.6).
ASSUMED_PAPER_SIZE = (1024, 2048)
#: The classes of the zoo's paper figures: all are Cityscapes (19 classes).
PAPER_NUM_CLASSES = 19


def _size_text(size):
    return f"{size[0]}x{size[1]}"


def describe_text(summary):
    """The table of ``summary`` beside the paper. A paper figure is compared (with the
    ratio) only where it was measured like ours: Multiply-Adds at the paper's input
    size, whole-network figures at the paper's number of classes; otherwise a line
    says what to run to compare."""
    fmt = counting.format_count
    paper = summary.get("paper", {})
    size = tuple(summary["input_size"])
    same_classes = summary["num_classes"] == paper.get("num_classes", PAPER_NUM_CLASSES)
    notes = []

    def paper_size(size_key):
        if size_key in paper:
            return tuple(paper[size_key]), ""
        return ASSUMED_PAPER_SIZE, " (assumed: the paper does not state it)"

    def madds(key, size_key, what, whole_network):
        if key not in paper:
            return None
        at, assumed = paper_size(size_key)
        other_classes = whole_network and not same_classes
        if at != size or other_classes:
            classes = paper.get("num_classes", PAPER_NUM_CLASSES)
            notes.append(
                f"the paper's {what} Multiply-Adds ({fmt(paper[key])}) are at "
                f"{_size_text(at)}{assumed}"
                + (f" and {classes} classes" if other_classes else "")
                + f": run with --input_size={_size_text(at)}"
                + (f" --num_classes={classes}" if other_classes else "") + " to compare")
            return None
        if assumed:
            notes.append(f"the paper's {what} Multiply-Adds compared at "
                         f"{_size_text(at)}{assumed}")
        return paper[key]

    params = paper.get("params")
    if params is not None and not same_classes:
        notes.append(f"the paper's params ({fmt(params)}) are for "
                     f"{paper.get('num_classes', PAPER_NUM_CLASSES)} classes")
        params = None
    rows = [("params", summary["params"], params),
            (f"Multiply-Adds @ {_size_text(size)}", summary["madds"],
             madds("madds", "madds_input_size", "whole-network", True))]
    if "context_params" in summary:
        rows += [("context params", summary["context_params"], paper.get("context_params")),
                 ("context Multiply-Adds", summary["context_madds"],
                  madds("context_madds", "context_input_size", "context", False))]
    lines = [f"{summary['name']} ({summary['num_classes']} classes, input "
             f"{_size_text(size)})",
             f"  {'':26s} {'ours':>10s} {'paper':>10s}"]
    for label, ours, theirs in rows:
        ratio = f"  ({ours / theirs:.3f}x)" if theirs else ""
        lines.append(f"  {label:26s} {fmt(ours):>10s} "
                     f"{fmt(theirs) if theirs else '-':>10s}{ratio}")
    lines += [f"  {note}" for note in notes]
    if paper.get("source"):
        lines.append(f"  paper: {paper['source']}")
    return "\n".join(lines)


def zoo_tool(args, num_classes, input_size, json):  # pylint: disable=redefined-outer-name
    if not args or args[0] not in ("list", "describe"):
        raise app.UsageError("expected a command: list | describe NAME")
    if args[0] == "list":
        if len(args) > 1:
            raise app.UsageError(f"'list' takes no arguments, got {' '.join(args[1:])}")
        print(list_text())
        return 0
    if len(args) != 2:
        raise app.UsageError("usage: nasseg-zoo describe NAME [--num_classes N] "
                             "[--input_size HxW] [--json]")
    summary = describe_model(args[1], num_classes, parse_size(input_size))
    print(_json.dumps(summary, indent=2) if json else describe_text(summary))
    return 0


main = common.make_main("nasseg-zoo", zoo_tool, errors=(ValueError,), positional=True)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
