"""``make demo`` / ``nasseg-demo``: the package end to end on generated data.

Usage:
    nasseg-demo [--output_dir=demo_output] [--model=autodeeplab_s]

Builds Auto-DeepLab-S from the model zoo, prints its size and cost beside the paper,
exports it as a SavedModel, reloads the export and segments a generated street scene,
writing the colorized prediction and an overlay as PNG files.

Training, evaluation and search are not wired into the demo yet: the network here has
random weights, so its prediction is noise. (Training arrives with the training loop.)
"""

import os
import sys
import time

from absl import app, flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("output_dir", "demo_output", "Where the demo writes its files.",
                        flag_values=flag_values)
    flags.DEFINE_string("model", "autodeeplab_s", "Zoo model to run.",
                        flag_values=flag_values)
    flags.DEFINE_integer("image_size", 257, "Side of the generated test image.",
                         lower_bound=33, flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the generated scene.", flag_values=flag_values)


def run_demo(output_dir, model_name="autodeeplab_s", image_size=257, seed=0, log=print):
    """Runs the demo; returns a dict of the files written and the figures printed."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nasseg_tf import visualize  # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli.zoo import describe_model, describe_text  # pylint: disable=import-outside-toplevel
    from nasseg_tf.data import generate_demo_example, get_dataset_info  # pylint: disable=import-outside-toplevel
    from nasseg_tf.export import export_saved_model, load_serving  # pylint: disable=import-outside-toplevel
    from nasseg_tf.models import zoo  # pylint: disable=import-outside-toplevel

    os.makedirs(output_dir, exist_ok=True)
    info = get_dataset_info("demo")
    log(f"[1/4] {model_name} at the paper's setting (Cityscapes, 19 classes):")
    log(describe_text(describe_model(model_name, 19, (1024, 2048))))

    t0 = time.time()
    model = zoo.build(model_name, num_classes=info.num_classes)
    export_dir = os.path.join(output_dir, "export")
    log(f"[2/4] exporting a {info.num_classes}-class {model_name} (random weights) "
        f"to {export_dir} ...")
    export_saved_model(model, export_dir)
    log(f"      exported in {time.time() - t0:.1f}s")

    log("[3/4] reloading the SavedModel and segmenting a generated street scene ...")
    serving = load_serving(export_dir)
    image, label = generate_demo_example(seed, image_size, image_size)
    out = serving.signatures["serving_default"](images=tf.constant(image[None]))
    pred = out["semantic"].numpy()[0]
    keras_pred = np.argmax(np.asarray(model(image[None].astype("float32"),
                                            training=False))[0], -1)
    agree = float(np.mean(pred == keras_pred))
    log(f"      SavedModel and Keras predictions agree on {agree:.2%} of pixels")

    files = {
        "image": visualize.save_png(image, os.path.join(output_dir, "image.png")),
        "ground_truth": visualize.save_png(info.colorize(label),
                                           os.path.join(output_dir, "ground_truth.png")),
        "prediction": visualize.save_png(info.colorize(pred),
                                         os.path.join(output_dir, "prediction.png")),
    }
    files["overlay"] = visualize.save_png(
        visualize.side_by_side(image, visualize.overlay(image, info.colorize(label)),
                               visualize.overlay(image, info.colorize(pred))),
        os.path.join(output_dir, "overlay.png"))
    log(f"[4/4] wrote {', '.join(files.values())}")
    log("demo: the model is untrained (random weights); training, evaluation and "
        "search arrive with the training loop.")
    return {"files": files, "agreement": agree}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    try:
        run_demo(FLAGS.output_dir, FLAGS.model, FLAGS.image_size, FLAGS.seed)
    except ValueError as e:
        print(f"nasseg-demo: error: {e}", file=sys.stderr)
        return 2
    return 0


def run():
    """Console-script entry point."""
    common.setup(__doc__)
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
