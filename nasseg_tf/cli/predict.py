"""``nasseg-predict``: segment images with a SavedModel or a training run.

Usage:
    nasseg-predict --saved_model=runs/demo/export --images="photos/*.jpg" --output_dir=out
    nasseg-predict --model_dir=runs/demo --images=street.png --output_dir=out

For every input image NAME it writes NAME_label.png (colorized label map) and
NAME_overlay.png (the label map blended over the image). With --model_dir the latest
checkpoint of that run is used (rebuilt from its config.gin); with --saved_model the
export's metadata names the classes (or --dataset does).
"""

import glob
import os

from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("saved_model", None, "An exported SavedModel folder.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "A training run folder (latest checkpoint).",
                        flag_values=flag_values)
    flags.DEFINE_multi_string("images", [], "Image files or glob patterns.",
                              flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where the PNGs go.", flag_values=flag_values)
    flags.DEFINE_string("dataset", None, "Dataset whose palette draws the labels "
                        "(default: from the model).", flag_values=flag_values)
    flags.DEFINE_float("alpha", 0.5, "Overlay opacity of the label colours.",
                       flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def _image_paths(patterns):
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no image matches {pattern!r}")
        paths += found
    if not paths:
        raise ValueError("give at least one --images")
    return paths


def _predictor(saved_model=None, model_dir=None, dataset=None):
    """``(predict(image uint8 HxWx3) -> label HxW, DatasetInfo)``."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nasseg_tf.data import get_dataset_info  # pylint: disable=import-outside-toplevel

    if bool(saved_model) == bool(model_dir):
        raise ValueError("give exactly one of --saved_model or --model_dir")
    if saved_model:
        from nasseg_tf.export import load_metadata, load_serving  # pylint: disable=import-outside-toplevel

        serving = load_serving(saved_model).signatures["serving_default"]
        meta = load_metadata(saved_model) or {}
        name = dataset or meta.get("dataset")
        if not name:
            raise ValueError("the SavedModel has no metadata: pass --dataset")
        info = get_dataset_info(name)

        def predict(image):
            return serving(images=tf.constant(image[None]))["semantic"].numpy()[0]
        return predict, info

    from nasseg_tf.train import experiment  # pylint: disable=import-outside-toplevel

    experiment.parse_gin([os.path.join(model_dir, "config.gin")])
    model, info, _ = experiment.restore_model(model_dir)
    info = get_dataset_info(dataset) if dataset else info

    def predict(image):
        logits = model(image[None].astype("float32"), training=False)
        return np.argmax(np.asarray(logits)[0], -1)
    return predict, info


def predict_files(paths, output_dir, saved_model=None, model_dir=None, dataset=None,
                  alpha=0.5):
    """Writes label and overlay PNGs for ``paths``; returns the files written."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from nasseg_tf import visualize  # pylint: disable=import-outside-toplevel

    predict, info = _predictor(saved_model, model_dir, dataset)
    written = []
    for path in paths:
        try:
            image = np.asarray(Image.open(path).convert("RGB"))
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        colored = info.colorize(predict(image))
        stem = os.path.splitext(os.path.basename(path))[0]
        written.append(visualize.save_png(
            colored, os.path.join(output_dir, f"{stem}_label.png")))
        written.append(visualize.save_png(
            visualize.overlay(image, colored, alpha),
            os.path.join(output_dir, f"{stem}_overlay.png")))
    return written


def _predict(FLAGS):
    written = predict_files(_image_paths(FLAGS.images), FLAGS.output_dir,
                            FLAGS.saved_model, FLAGS.model_dir, FLAGS.dataset, FLAGS.alpha)
    print(f"nasseg-predict: wrote {len(written)} files to {FLAGS.output_dir}")


main = common.make_main("nasseg-predict", _predict)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
