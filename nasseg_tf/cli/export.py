"""``nasseg-export``: write a serving SavedModel from a trained model or a zoo entry.

Usage:
    nasseg-export --keras_model=run/model.keras --export_dir=run/export
    nasseg-export --model=autodeeplab_s --num_classes=19 --export_dir=/tmp/adl_s

The SavedModel's ``serving_default`` takes uint8 images [N, H, W, 3] and returns
``semantic`` (int32 label map) and ``probabilities``; ``serve_encoded`` takes PNG/JPEG
bytes. Both refuse an image of more than ``--max_pixels`` pixels (H·W; default
2048x2048, 0: no limit), an empty batch and an empty image, with an
InvalidArgumentError that says so. ``--model`` exports a freshly initialised zoo
model (useful to test a serving stack before training).
"""


from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("keras_model", None, "A saved .keras model to export.",
                        flag_values=flag_values)
    flags.DEFINE_string("model", None, "A zoo model name (random weights).",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_classes", 19, "Classes, with --model.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "Destination folder.", flag_values=flag_values)
    flags.DEFINE_bool("overwrite", True, "Replace an existing export.",
                      flag_values=flag_values)
    flags.DEFINE_integer("max_pixels", 2048 * 2048, "Largest image (height x width) "
                         "the export serves; 0: no limit.", lower_bound=0,
                         flag_values=flag_values)
    flags.mark_flag_as_required("export_dir", flag_values=flag_values)


def load_model(keras_model=None, model=None, num_classes=19):
    """The model to export, from a .keras file or the zoo."""
    if bool(keras_model) == bool(model):
        raise ValueError("give exactly one of --keras_model or --model")
    if model:
        from nasseg_tf.models import zoo  # pylint: disable=import-outside-toplevel

        return zoo.build(model, num_classes=num_classes)
    import keras  # pylint: disable=import-outside-toplevel

    import nasseg_tf.layers  # noqa: F401  registers the custom layers
    return keras.models.load_model(keras_model)


def export(keras_model, model, num_classes, export_dir, overwrite, max_pixels):
    """The tool's body."""
    from nasseg_tf.export import export_saved_model  # pylint: disable=import-outside-toplevel

    loaded = load_model(keras_model, model, num_classes)
    path = export_saved_model(loaded, export_dir, overwrite=overwrite,
                              max_pixels=max_pixels)
    print(f"exported {loaded.name} to {path} (signatures: serving_default, serve_encoded)")


main = common.make_main("nasseg-export", export)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
