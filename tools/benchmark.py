r"""Benchmarks that write JSON (performance is measured here, not in tests).

Usage:
    python tools/benchmark.py train --model=autodeeplab_s --crop=513x513 --batch=2 \
        --output=bench/train_adl_s.json
    python tools/benchmark.py search --crop=65x65 --batch=2 --filter_multiplier=4 \
        --num_layers=6 [--remat] [--nofused_sgd] [--partial_channels=4] \
        [--atrous_op=dilated_separable] --output=bench/search_65_f4_l6.json
    python tools/benchmark.py dpc_proxy --dpc_crop=129x129 --dpc_batch=8 \
        --dpc_filters=256 --dpc_cells=3 --dpc_steps=20 --output=bench/dpc_proxy.json
    python tools/benchmark.py tflite --model=mobilenetv2_dpc --crop=257x257 \
        --num_classes=19 --output=bench/tflite_mobilenetv2_dpc_257.json

Subcommands:
  train   a zoo model: training and evaluation images/s, first-call time, peak RSS.
  search  the Auto-DeepLab supernet: seconds per weight step and per architecture step,
          first-call (trace + graph build) time of each, traced graph nodes, forward
          Multiply-Adds, peak RSS (SPEC §6's table).
  dpc_proxy  DPC proxy trials per hour with cached MobileNet-v2 features vs recomputing
          the frozen backbone in every step (same cells and steps, one run), their
          ratio (SPEC §6: >= 10x), and the one-time cache build time.
  tflite  a zoo model (or --keras_model) converted to TFLite float32 / dynamic_range /
          int8 at --crop: file size, median interpreter latency (--tflite_threads),
          pixel agreement with the Keras float model on demo images.
Run each configuration in its own process (peak RSS is per process) and several times:
this machine varies 20–40% between processes; quote medians.
"""

import json
import os
import sys

from absl import app, flags

from nasseg_tf.cli import common
from nasseg_tf.cli.zoo_tool import parse_size

flags.DEFINE_string("model", "autodeeplab_s", "Zoo model.")
flags.DEFINE_string("crop", "513x513", "Crop HxW.")
flags.DEFINE_integer("batch", 2, "Batch size.")
flags.DEFINE_integer("num_classes", 19, "Classes.")
flags.DEFINE_integer("steps", 5, "Timed training steps (after one warm-up).")
flags.DEFINE_string("overrides", "{}", "JSON dict of zoo overrides.")
flags.DEFINE_integer("filter_multiplier", 8, "search: F.")
flags.DEFINE_integer("num_layers", 12, "search: L.")
flags.DEFINE_bool("remat", False, "search: recompute each cell's activations in backward.")
flags.DEFINE_bool("fused_sgd", True, "search: the weights' SGD updates each variable with one "
                  "op (FusedSGD); --nofused_sgd: Keras' SGD.")
flags.DEFINE_enum("cell_type", "batched", ["batched", "per_edge"], "search: cell graph.")
flags.DEFINE_bool("loop_layers", True,
                  "search: trace the identical layers 4..L-1 once and loop over them "
                  "(--noloop_layers unrolls every layer).")
flags.DEFINE_integer("partial_channels", 1,
                     "search: PC-DARTS' K, 1/K of the channels through the ops (1: exact).")
flags.DEFINE_enum("atrous_op", "regular", ["regular", "dilated_separable"],
                  "search: how the supernet computes the atrous ops.")
flags.DEFINE_bool("count_madds", True, "search: also count the forward Multiply-Adds.")
flags.DEFINE_string("dpc_crop", "129x129", "dpc_proxy: crop HxW (demo images of that size).")
flags.DEFINE_integer("dpc_batch", 8, "dpc_proxy: batch size (paper: 8).")
flags.DEFINE_integer("dpc_filters", 256, "dpc_proxy: DPC filters (paper: 256).")
flags.DEFINE_integer("dpc_cells", 3, "dpc_proxy: random cells, each trained both ways.")
flags.DEFINE_integer("dpc_steps", 20, "dpc_proxy: training steps per trial.")
flags.DEFINE_integer("dpc_num_train", 32, "dpc_proxy: demo training images.")
flags.DEFINE_integer("dpc_num_val", 16, "dpc_proxy: demo validation images.")
flags.DEFINE_float("dpc_depth_multiplier", 1.0, "dpc_proxy: MobileNet-v2 width.")
flags.DEFINE_integer("dpc_output_stride", 16, "dpc_proxy: backbone output stride.")
flags.DEFINE_integer("dpc_project_steps", 30000,
                     "dpc_proxy: also project both rates to trials of this many steps.")
flags.DEFINE_string("dpc_work_dir", None, "dpc_proxy: data + cache folder (default: temp).")
flags.DEFINE_string("keras_model", None, "tflite: a .keras model instead of --model "
                    "with scaled random weights.")
flags.DEFINE_integer("tflite_threads", 1, "tflite: interpreter threads.")
flags.DEFINE_integer("tflite_repeats", 20, "tflite: timed invocations.")
flags.DEFINE_integer("tflite_eval", 8, "tflite: demo images for the agreement.")
flags.DEFINE_integer("tflite_calibration", 16, "tflite: int8 calibration images.")
flags.DEFINE_string("output", None, "JSON output file (also printed).")
FLAGS = flags.FLAGS


SUBCOMMANDS = ("train", "search", "dpc_proxy", "tflite")


def main(argv):
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        raise app.UsageError(f"expected a subcommand: {' | '.join(SUBCOMMANDS)}")
    # pylint: disable=import-outside-toplevel
    if argv[1] == "train":
        from nasseg_tf.bench.train_bench import bench_train

        result = bench_train(FLAGS.model, parse_size(FLAGS.crop), FLAGS.batch,
                             FLAGS.num_classes, FLAGS.steps,
                             overrides=json.loads(FLAGS.overrides))
    elif argv[1] == "tflite":
        from nasseg_tf.bench.tflite_bench import bench_tflite

        result = bench_tflite(FLAGS.model, parse_size(FLAGS.crop), FLAGS.num_classes,
                              overrides=json.loads(FLAGS.overrides),
                              keras_model=FLAGS.keras_model,
                              num_threads=FLAGS.tflite_threads,
                              repeats=FLAGS.tflite_repeats, num_eval=FLAGS.tflite_eval,
                              num_calibration=FLAGS.tflite_calibration)
    elif argv[1] == "dpc_proxy":
        from nasseg_tf.bench.dpc_proxy_bench import bench_dpc_proxy

        result = bench_dpc_proxy(parse_size(FLAGS.dpc_crop), FLAGS.dpc_batch,
                                 FLAGS.dpc_filters, FLAGS.dpc_cells, FLAGS.dpc_steps,
                                 num_train=FLAGS.dpc_num_train, num_val=FLAGS.dpc_num_val,
                                 depth_multiplier=FLAGS.dpc_depth_multiplier,
                                 output_stride=FLAGS.dpc_output_stride,
                                 project_steps=FLAGS.dpc_project_steps,
                                 work_dir=FLAGS.dpc_work_dir)
    else:
        from nasseg_tf.bench.search_bench import bench_search

        result = bench_search(parse_size(FLAGS.crop), FLAGS.batch, FLAGS.filter_multiplier,
                              FLAGS.num_layers, FLAGS.num_classes, remat=FLAGS.remat,
                              cell_type=FLAGS.cell_type,
                              loop_layers=FLAGS.loop_layers, steps=FLAGS.steps,
                              count_madds=FLAGS.count_madds,
                              partial_channels=FLAGS.partial_channels,
                              atrous_op=FLAGS.atrous_op, fused_sgd=FLAGS.fused_sgd)
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
