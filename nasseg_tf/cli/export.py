r"""``nasseg-export``: export a training run, a .keras model or a zoo entry for serving.

Usage:
    nasseg-export --model_dir=runs/demo --export_dir=serving/demo
    nasseg-export --model_dir=runs/demo --checkpoint=runs/demo/checkpoints/ckpt-200 \
        --export_dir=serving/demo
    nasseg-export --keras_model=model.keras --dataset=cityscapes --export_dir=serving/m
    nasseg-export --model=mobilenetv2_dpc --num_classes=19 --export_dir=/tmp/m
    nasseg-export --model_dir=runs/demo --format=tflite --quantization=int8 \
        --input_size=257,257 --export_dir=tflite/demo_int8

What is exported (exactly one of):
  --model_dir   a training run, rebuilt from its config.gin. Weights: --checkpoint if
                given; else the run's latest checkpoint (checkpoints/); else its
                model.keras (a run without checkpoints). The classes come from the
                run's dataset.
  --keras_model a .keras file; --model a zoo entry with fresh weights (to try a
                serving stack). Classes from --dataset, else class_0.. (noted).

SavedModel (--format=saved_model, default): --export_dir is a TF Serving base folder;
the export goes to its next numbered version folder (BASE/1, BASE/2, ...; --version=N
picks N). Signatures serving_default (uint8 images [N, H, W, 3]) and serve_encoded
(PNG/JPEG bytes), returning semantic (int32 labels) and, unless --noprobabilities,
probabilities. Images over --max_pixels (H x W) are refused.

TFLite (--format=tflite): --export_dir receives model.tflite, for one fixed
--input_size (H,W); --quantization=float32|dynamic_range|int8. int8 calibrates on
--num_representative images of the run's training TFRecords (or
--representative_pattern).

Every export holds nasseg_metadata.json: class names, palette, ignore label, input,
model, source checkpoint. Exports are written aside and installed whole; remote
folders (gs://) work.
"""

import os

from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("model_dir", None, "A training run to export (its config.gin "
                        "and latest checkpoint).", flag_values=flag_values)
    flags.DEFINE_string("checkpoint", None, "With --model_dir: this checkpoint instead "
                        "of the latest.", flag_values=flag_values)
    flags.DEFINE_string("keras_model", None, "A saved .keras model to export.",
                        flag_values=flag_values)
    flags.DEFINE_string("model", None, "A zoo model name (random weights).",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_classes", 19, "Classes, with --model.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("dataset", None, "With --keras_model / --model: the dataset "
                        "(name or description folder) naming the classes.",
                        flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "SavedModel: the TF Serving base folder "
                        "(a version folder is made in it). TFLite: the folder for "
                        "model.tflite.", flag_values=flag_values)
    flags.DEFINE_integer("version", None, "SavedModel version number (default: the "
                         "next free one).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_bool("overwrite", True, "Replace an existing --version or TFLite "
                      "folder.", flag_values=flag_values)
    flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"],
                      "What to write.", flag_values=flag_values)
    flags.DEFINE_bool("probabilities", True, "Also output the softmax probabilities "
                      "(semantic labels are always output).", flag_values=flag_values)
    flags.DEFINE_integer("max_pixels", 2048 * 2048, "SavedModel: largest image "
                         "(height x width) served; 0: no limit.", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_string("input_size", "513,513", "TFLite: the fixed input H,W.",
                        flag_values=flag_values)
    flags.DEFINE_enum("quantization", "float32", ["float32", "dynamic_range", "int8"],
                      "TFLite weights/arithmetic.", flag_values=flag_values)
    flags.DEFINE_string("representative_pattern", None, "TFLite int8: TFRecords to "
                        "calibrate on (default: the run's training data).",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_representative", 32, "TFLite int8: calibration images.",
                         lower_bound=1, flag_values=flag_values)
    flags.mark_flag_as_required("export_dir", flag_values=flag_values)


def parse_input_size(text):
    """``"H,W"`` (or ``HxW``) as ``(H, W)``."""
    parts = str(text).replace("x", ",").split(",")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--input_size must be H,W (e.g. 513,513), not {text!r}") \
            from None
    if height < 1 or width < 1:
        raise ValueError(f"--input_size must be positive, not {text!r}")
    return height, width


class Source:
    """What to export: the Keras model, its class metadata and where it came from."""

    def __init__(self, model, classes, source, train_pattern=None):
        self.model = model
        self.classes = classes
        self.source = source
        self.train_pattern = train_pattern


def _run_checkpoint(model_dir, checkpoint):
    """The checkpoint to restore: ``checkpoint``, else the run's latest; None when the
    run has none."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if checkpoint:
        if not tf.io.gfile.glob(checkpoint + ".index*"):
            raise FileNotFoundError(f"no checkpoint {checkpoint} (expected "
                                    f"{checkpoint}.index)")
        return checkpoint
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


def load_run(model_dir, checkpoint=None):
    """A training run's model (:class:`Source`): --checkpoint, else the latest
    checkpoint, else ``model.keras``."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf import fileio
    from nasseg_tf.cli import configs
    from nasseg_tf.data import get_dataset_info
    from nasseg_tf.export.metadata import class_metadata
    from nasseg_tf.export.saved_model import num_classes_of
    from nasseg_tf.train import experiment

    configs.load_run(model_dir)
    groups = configs.bound("model", "data")
    data = groups["data"]
    path = _run_checkpoint(model_dir, checkpoint)
    if path is not None:
        model, info, step = experiment.restore_model(model_dir, checkpoint=path,
                                                     **groups)
        source = {"kind": "checkpoint", "path": fileio.abspath(path), "step": step}
    else:
        keras_file = os.path.join(model_dir, "model.keras")
        if not fileio.exists(keras_file):
            raise FileNotFoundError(f"{model_dir} has no checkpoint (checkpoints/) and "
                                    "no model.keras: is it a training run?")
        model = _load_keras(keras_file)
        info = get_dataset_info(data.dataset)
        source = {"kind": "keras_model", "path": fileio.abspath(keras_file)}
    source["model_dir"] = fileio.abspath(model_dir)
    train_pattern = data.train_pattern or info.split_pattern("train")
    if train_pattern is None and data.dataset == "demo":
        train_pattern = lambda: data.resolve(model_dir)[1]  # noqa: E731 (on demand)
    return Source(model, class_metadata(num_classes_of(model), info, data.dataset),
                  source, train_pattern)


def _load_keras(path):
    import importlib  # pylint: disable=import-outside-toplevel

    import keras  # pylint: disable=import-outside-toplevel

    importlib.import_module("nasseg_tf.layers")  # registers the custom layers
    if not os.path.exists(path) and "://" not in path:
        raise FileNotFoundError(f"no .keras model at {path}")
    return keras.saving.load_model(path, compile=False)


def load_model(keras_model=None, model=None, num_classes=19):
    """The model to export, from a .keras file or the zoo."""
    if bool(keras_model) == bool(model):
        raise ValueError("give exactly one of --keras_model or --model")
    if model:
        from nasseg_tf.models import zoo  # pylint: disable=import-outside-toplevel

        return zoo.build(model, num_classes=num_classes)
    return _load_keras(keras_model)


def load_source(model_dir=None, checkpoint=None, keras_model=None, model=None,
                num_classes=19, dataset=None):
    """What to export (:class:`Source`) from the tool's flags."""
    if sum(bool(x) for x in (model_dir, keras_model, model)) != 1:
        raise ValueError("give exactly one of --model_dir, --keras_model or --model")
    if checkpoint and not model_dir:
        raise ValueError("--checkpoint goes with --model_dir")
    if model_dir:
        if dataset:
            raise ValueError("--dataset goes with --keras_model or --model (a run "
                             "names its own dataset)")
        return load_run(model_dir, checkpoint)
    # pylint: disable=import-outside-toplevel
    from nasseg_tf import fileio
    from nasseg_tf.data import get_dataset_info
    from nasseg_tf.export.metadata import GENERIC_NOTE, class_metadata
    from nasseg_tf.export.saved_model import num_classes_of

    info = get_dataset_info(dataset) if dataset else None  # a bad name fails first
    loaded = load_model(keras_model, model, num_classes)
    classes = class_metadata(num_classes_of(loaded), info, dataset)
    if info is None:
        print("nasseg-export: note: " + GENERIC_NOTE.format(
            last=classes["num_classes"] - 1))
    source = ({"kind": "keras_model", "path": fileio.abspath(keras_model)}
              if keras_model else {"kind": "zoo", "name": model,
                                   "weights": "random initialisation"})
    train_pattern = info.split_pattern("train") if info is not None else None
    return Source(loaded, classes, source, train_pattern)


def export(model_dir, checkpoint, keras_model, model, num_classes, dataset, export_dir,
           version, overwrite, format, probabilities, max_pixels, input_size,  # pylint: disable=redefined-builtin
           quantization, representative_pattern, num_representative):
    """The tool's body; returns the path written."""
    # pylint: disable=import-outside-toplevel
    size = parse_input_size(input_size) if format == "tflite" else None
    if format == "tflite" and version is not None:
        raise ValueError("--version goes with --format=saved_model")
    if representative_pattern and quantization != "int8":
        raise ValueError("--representative_pattern goes with --quantization=int8")
    if format == "saved_model" and quantization != "float32":
        raise ValueError("--quantization goes with --format=tflite")
    src = load_source(model_dir, checkpoint, keras_model, model, num_classes, dataset)
    metadata = dict(src.classes, source=src.source)
    if format == "saved_model":
        from nasseg_tf.export import export_version

        path = export_version(src.model, export_dir, version=version,
                              overwrite=overwrite, metadata=metadata,
                              max_pixels=max_pixels, probabilities=probabilities)
        print(f"exported {src.model.name} to {path} (signatures: serving_default, "
              "serve_encoded)")
        return path
    from nasseg_tf.export import tflite

    representative = None
    if quantization == "int8":
        pattern = representative_pattern or src.train_pattern
        pattern = pattern() if callable(pattern) else pattern
        if not pattern:
            raise ValueError("--quantization=int8 needs calibration images: pass "
                             "--representative_pattern (TFRecords)")
        representative = tflite.representative_images(pattern, num_representative, size)
        metadata["representative"] = {"pattern": pattern,
                                       "num_images": len(representative)}
    path = tflite.export_tflite(src.model, export_dir, size, quantization,
                                representative, probabilities, metadata, overwrite)
    print(f"exported {src.model.name} to {path} ({quantization}, input "
          f"{size[0]}x{size[1]})")
    return path


main = common.make_main("nasseg-export", export)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
