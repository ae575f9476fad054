"""``nasseg-zoo``: list the model zoo and describe a model's size and cost.

Usage:
    nasseg-zoo list
    nasseg-zoo describe autodeeplab_s --num_classes=19 --input_size=1024x2048 [--json]

``describe`` prints trainable params and Multiply-Adds at the input size (see
``nasseg_tf.counting`` for what is counted) beside the paper's figures, and for models
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


def describe_text(summary):
    fmt = counting.format_count
    paper = summary.get("paper", {})
    h, w = summary["input_size"]
    size = (h, w)

    def at_size(key, size_key):  # a paper's Multiply-Adds compare only at its input size
        given = tuple(paper.get(size_key, size))
        return paper.get(key) if given == size else None

    rows = [("params", summary["params"], paper.get("params")),
            (f"Multiply-Adds @ {h}x{w}", summary["madds"],
             at_size("madds", "madds_input_size"))]
    if "context_params" in summary:
        rows += [("context params", summary["context_params"], paper.get("context_params")),
                 ("context Multiply-Adds", summary["context_madds"],
                  at_size("context_madds", "context_input_size"))]
    lines = [f"{summary['name']} ({summary['num_classes']} classes)",
             f"  {'':26s} {'ours':>10s} {'paper':>10s}"]
    for label, ours, theirs in rows:
        ratio = f"  ({ours / theirs:.3f}x)" if theirs else ""
        lines.append(f"  {label:26s} {fmt(ours):>10s} "
                     f"{fmt(theirs) if theirs else '-':>10s}{ratio}")
    for key, what in (("madds_input_size", "whole-network"),
                      ("context_input_size", "context")):
        if key in paper and tuple(paper[key]) != size:
            ph, pw = paper[key]
            lines.append(f"  the paper's {what} Multiply-Adds are at {ph}x{pw}: "
                         f"run with --input_size={ph}x{pw} to compare")
    if paper.get("source"):
        lines.append(f"  paper: {paper['source']}")
    return "\n".join(lines)


def zoo_tool(args, num_classes, input_size, json):  # pylint: disable=redefined-outer-name
    if not args or args[0] not in ("list", "describe"):
        raise app.UsageError("expected a command: list | describe NAME")
    if args[0] == "list":
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
