r"""Benchmarks that write JSON (performance is measured here, not in tests).

Usage:
    python tools/benchmark.py train --model=autodeeplab_s --crop=513x513 --batch=2 \
        --output=bench/train_adl_s.json
    python tools/benchmark.py search --crop=65x65 --batch=2 --filter_multiplier=4 \
        --num_layers=6 [--remat] --output=bench/search_65_f4_l6.json

Subcommands:
  train   a zoo model: training and evaluation images/s, first-call time, peak RSS.
  search  the Auto-DeepLab supernet: seconds per weight step and per architecture step,
          first-call (trace + graph build) time of each, traced graph nodes, forward
          Multiply-Adds, peak RSS (SPEC §6's table).
Run each configuration in its own process (peak RSS is per process) and several times:
this machine varies 20–40% between processes; quote medians.
"""

import json
import os
import sys

from absl import app, flags

from nasseg_tf.cli import common
from nasseg_tf.cli.zoo import parse_size

flags.DEFINE_string("model", "autodeeplab_s", "Zoo model.")
flags.DEFINE_string("crop", "513x513", "Crop HxW.")
flags.DEFINE_integer("batch", 2, "Batch size.")
flags.DEFINE_integer("num_classes", 19, "Classes.")
flags.DEFINE_integer("steps", 5, "Timed training steps (after one warm-up).")
flags.DEFINE_string("overrides", "{}", "JSON dict of zoo overrides.")
flags.DEFINE_integer("filter_multiplier", 8, "search: F.")
flags.DEFINE_integer("num_layers", 12, "search: L.")
flags.DEFINE_bool("remat", False, "search: recompute each cell's activations in backward.")
flags.DEFINE_enum("cell_type", "batched", ["batched", "per_edge"], "search: cell graph.")
flags.DEFINE_bool("loop_layers", True,
                  "search: trace the identical layers 4..L-1 once and loop over them "
                  "(--noloop_layers unrolls every layer).")
flags.DEFINE_bool("count_madds", True, "search: also count the forward Multiply-Adds.")
flags.DEFINE_string("output", None, "JSON output file (also printed).")
FLAGS = flags.FLAGS


SUBCOMMANDS = ("train", "search")


def main(argv):
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        raise app.UsageError(f"expected a subcommand: {' | '.join(SUBCOMMANDS)}")
    # pylint: disable=import-outside-toplevel
    if argv[1] == "train":
        from nasseg_tf.bench.train_bench import bench_train

        result = bench_train(FLAGS.model, parse_size(FLAGS.crop), FLAGS.batch,
                             FLAGS.num_classes, FLAGS.steps,
                             overrides=json.loads(FLAGS.overrides))
    else:
        from nasseg_tf.bench.search_bench import bench_search

        result = bench_search(parse_size(FLAGS.crop), FLAGS.batch, FLAGS.filter_multiplier,
                              FLAGS.num_layers, FLAGS.num_classes, remat=FLAGS.remat,
                              cell_type=FLAGS.cell_type,
                              loop_layers=FLAGS.loop_layers, steps=FLAGS.steps,
                              count_madds=FLAGS.count_madds)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        tmp = FLAGS.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, FLAGS.output)
    return 0


if __name__ == "__main__":
    common.setup(__doc__)
    sys.exit(app.run(main))
