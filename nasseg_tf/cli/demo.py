"""``make demo`` / ``nasseg-demo``: the package end to end on generated data.

Usage:
    nasseg-demo [--output_dir=demo_output] [--gin_bindings="Training.steps = 600"]

On the procedural street-scene dataset (generated on first use) it:

1. prints Auto-DeepLab-S's size and cost beside the paper (the full model);
2. trains a small Auto-DeepLab (published cell on a 6-layer path, F=8) with the one training
   loop (gin file ``gin/demo/train_demo.gin``), resuming if rerun;
3. evaluates it (mIoU, per-class IoU) against the majority-class baseline;
4. exports a SavedModel, reloads it and segments a held-out image into PNGs;
5. ends with ``demo: mIoU <x> (majority-class baseline <y>)``.

Outputs in --output_dir: ``run/`` (checkpoints, TensorBoard, eval_results.json,
pictures), ``export/`` (SavedModel), ``prediction_overlay.png``.
"""

import os
import sys
import time

from absl import flags

from nasseg_tf.cli import common

DEMO_GIN = os.path.join("demo", "train_demo.gin")


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("output_dir", "demo_output", "Where the demo writes its files.",
                        flag_values=flag_values)
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings for the demo run.",
                              flag_values=flag_values)


def gin_dir():
    """The repository's ``gin/`` folder (next to the package in a source checkout)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(here, "gin")
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path} not found: run the demo from a source checkout (make demo)")
    return path


def run_demo(output_dir, gin_bindings=(), log=print):
    """Runs the demo; returns a dict with the scores and the files written."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nasseg_tf import visualize  # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli.zoo import describe_model, describe_text  # pylint: disable=import-outside-toplevel
    from nasseg_tf.data import build_dataset  # pylint: disable=import-outside-toplevel
    from nasseg_tf.export import (dataset_metadata, export_saved_model,  # pylint: disable=import-outside-toplevel
                                  load_serving)
    from nasseg_tf.train import experiment, metrics  # pylint: disable=import-outside-toplevel

    t_start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    log("[1/5] Auto-DeepLab-S at the paper's setting (Cityscapes, 19 classes, 1024x2048):")
    log(describe_text(describe_model("autodeeplab_s", 19, (1024, 2048))))

    run_dir = os.path.join(output_dir, "run")
    experiment.parse_gin([os.path.join(gin_dir(), DEMO_GIN)],
                         [f"Data.data_dir = '{os.path.join(output_dir, 'data')}'"]
                         + list(gin_bindings))
    cfg = experiment.TrainConfig()
    log(f"[2/5] training a small Auto-DeepLab on the demo dataset for {cfg.steps} steps "
        f"(batch {cfg.batch_size}, crops {cfg.crop_size[0]}x{cfg.crop_size[1]}) ...")
    out = experiment.train(run_dir, progress=True, argv=sys.argv)
    model = out["model"]
    log(f"      trained in {time.time() - t_start:.0f}s so far; checkpoints in {run_dir}")

    log("[3/5] evaluation on the validation split (after the last step):")
    info, eval_pattern = out["dataset_info"], out["eval_pattern"]
    results = out["eval"] or experiment.run_evaluation(
        model, info, eval_pattern, experiment.EvalConfig(), run_dir,
        step=out["metrics"].get("step"), progress=False)
    baseline = metrics.majority_class_baseline(
        np.asarray(results["confusion_matrix"]), info.class_names)
    for name, iou in results["per_class_iou"].items():
        log(f"      {name:12s} IoU {'-' if iou is None else f'{iou:.3f}'}")

    export_dir = os.path.join(output_dir, "export")
    log(f"[4/5] exporting a SavedModel to {export_dir} ...")
    export_saved_model(model, export_dir, metadata=dataset_metadata(info, model.name))

    log("[5/5] reloading it and segmenting a validation image ...")
    serving = load_serving(export_dir).signatures["serving_default"]
    image, label = next(iter(build_dataset(eval_pattern, num_classes=info.num_classes,
                                           training=False)))
    image = np.asarray(image[0]).astype(np.uint8)
    pred = serving(images=tf.constant(image[None]))["semantic"].numpy()[0]
    picture = visualize.side_by_side(
        image, visualize.overlay(image, info.colorize(np.asarray(label[0]))),
        visualize.overlay(image, info.colorize(pred)))
    overlay_path = visualize.save_png(picture,
                                      os.path.join(output_dir, "prediction_overlay.png"))
    log(f"      wrote {overlay_path} (image | ground truth | prediction)")
    log(f"      total time {time.time() - t_start:.0f}s")
    log(f"demo: mIoU {results['miou']:.3f} (majority-class baseline {baseline['miou']:.3f})")
    return {"miou": results["miou"], "baseline_miou": baseline["miou"],
            "overlay": overlay_path, "export_dir": export_dir, "run_dir": run_dir}


main = common.make_main(
    "nasseg-demo", lambda FLAGS: run_demo(FLAGS.output_dir, FLAGS.gin_bindings) and None)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
