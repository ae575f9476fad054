"""``nasseg-predict``: segment images with a SavedModel or a training run.

Usage:
    nasseg-predict --saved_model=runs/demo/export --images="photos/*.jpg" --output_dir=out
    nasseg-predict --model_dir=runs/demo --images=street.png --output_dir=out

For every input image NAME it writes NAME_label.png (colorized label map) and
NAME_overlay.png (the label map blended over the image). When two inputs share a NAME
(photos/a/img0.png, photos/b/img0.png), every output keeps its input's folders below
the inputs' common folder instead (out/a/img0_label.png, out/b/img0_label.png); and
when they also share their folder (img0.png, img0.jpg), the extension too
(out/img0.png_label.png). A file named twice is segmented once. All inputs are found
and opened before anything is written.

With --model_dir the latest checkpoint of that run is used (rebuilt from its
config.gin); with --saved_model (an export folder, or a TF Serving base folder: its
newest version) the export's metadata names and colours the classes (--dataset
overrides them), and an image the export refuses (larger than its max_pixels) stops
the run with an error naming the file.
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
    flags.DEFINE_string("dataset", None, "Dataset whose palette draws the labels: a "
                        "registry name or a dataset description (dataset.json or its "
                        "folder) (default: from the model).", flag_values=flag_values)
    flags.DEFINE_float("alpha", 0.5, "Overlay opacity of the label colours.",
                       flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def _image_paths(patterns):
    """The files matching ``patterns``, in order, each file once."""
    paths, seen = [], set()
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no image matches {pattern!r}")
        for path in found:
            key = os.path.normcase(os.path.realpath(path))
            if key not in seen:
                seen.add(key)
                paths.append(path)
    if not paths:
        raise ValueError("give at least one --images")
    return paths


def _unique(names):
    """Whether ``names`` differ, also on a case-insensitive file system."""
    return len({name.casefold() for name in names}) == len(names)


def output_names(paths):
    """Where each input's outputs go, relative to the output folder.

    Args:
      paths: distinct input files.

    Returns:
      One name per path, ``_label.png`` / ``_overlay.png`` to be appended: the file
      name without extension when these all differ; otherwise the path below the
      inputs' common folder without extension (``a/img0``, ``b/img0``); and when even
      those collide (``img0.png``, ``img0.jpg``), with extension.
    """
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    if _unique(stems):
        return stems
    absolute = [os.path.abspath(path) for path in paths]
    common = os.path.commonpath([os.path.dirname(path) for path in absolute])
    relative = [os.path.relpath(path, common) for path in absolute]
    without_extension = [os.path.splitext(path)[0] for path in relative]
    return without_extension if _unique(without_extension) else relative


def _plan(paths, output_dir):
    """``[(input, label PNG, overlay PNG)]`` once every input opens as an image and
    no output would replace an input."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    for path in paths:
        try:
            with Image.open(path):
                pass
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
    inputs = {os.path.normcase(os.path.realpath(path)): path for path in paths}
    plan = []
    for path, name in zip(paths, output_names(paths)):
        outputs = [os.path.join(output_dir, f"{name}_{kind}.png")
                   for kind in ("label", "overlay")]
        for output in outputs:
            clash = inputs.get(os.path.normcase(os.path.realpath(output)))
            if clash:
                raise ValueError(f"output {output} would replace the input {clash}; "
                                 "choose another --output_dir")
        plan.append((path, *outputs))
    return plan


class _RefusedInput(ValueError):
    """An image the exported model's input checks refuse (too large, empty)."""


def _predictor(saved_model=None, model_dir=None, dataset=None):
    """``(predict(image uint8 HxWx3) -> label HxW, DatasetInfo)``."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nasseg_tf.data import get_dataset_info  # pylint: disable=import-outside-toplevel

    if bool(saved_model) == bool(model_dir):
        raise ValueError("give exactly one of --saved_model or --model_dir")
    if saved_model:
        from nasseg_tf.export import (info_from_metadata, load_metadata,  # pylint: disable=import-outside-toplevel
                                      load_serving, serving_input_error)

        serving = load_serving(saved_model).signatures["serving_default"]
        info = get_dataset_info(dataset) if dataset else info_from_metadata(
            load_metadata(saved_model), f"the SavedModel {saved_model}")

        def predict(image):
            try:
                return serving(images=tf.constant(image[None]))["semantic"].numpy()[0]
            except tf.errors.InvalidArgumentError as e:
                message = serving_input_error(e)
                if message is None:
                    raise
                raise _RefusedInput(message) from None
        return predict, info

    from nasseg_tf.cli import configs  # pylint: disable=import-outside-toplevel
    from nasseg_tf.train import experiment  # pylint: disable=import-outside-toplevel

    configs.load_run(model_dir)
    model, info, _ = experiment.restore_model(model_dir, **configs.bound("model", "data"))
    info = get_dataset_info(dataset) if dataset else info

    def predict(image):
        logits = model(image[None].astype("float32"), training=False)
        return np.argmax(np.asarray(logits)[0], -1)
    return predict, info


def predict_files(paths, output_dir, saved_model=None, model_dir=None, dataset=None,
                  alpha=0.5):
    """Writes label and overlay PNGs for ``paths``; returns the files written.

    The output names are :func:`output_names`; nothing is written (and no model
    loaded) before every input has been opened.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from nasseg_tf import visualize  # pylint: disable=import-outside-toplevel

    plan = _plan(paths, output_dir)
    predict, info = _predictor(saved_model, model_dir, dataset)
    written = []
    for path, label_png, overlay_png in plan:
        try:
            image = np.asarray(Image.open(path).convert("RGB"))
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        try:
            colored = info.colorize(predict(image))
        except _RefusedInput as e:
            raise ValueError(f"cannot segment {path}: {e}") from None
        written.append(visualize.save_png(colored, label_png))
        written.append(visualize.save_png(visualize.overlay(image, colored, alpha),
                                          overlay_png))
    return written


def predict(images, output_dir, saved_model, model_dir, dataset, alpha):
    """The tool's body."""
    written = predict_files(_image_paths(images), output_dir, saved_model, model_dir,
                            dataset, alpha)
    print(f"nasseg-predict: wrote {len(written)} files to {output_dir}")


main = common.make_main("nasseg-predict", predict)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
