r"""``nasseg-import-checkpoint``: an official TF1 DeepLab checkpoint into a zoo model.

Usage:
    nasseg-import-checkpoint --model=xception71_dpc --num_classes=19 \
        --checkpoint=xception71_dpc_cityscapes_trainfine/model.ckpt \
        --output=xception71_dpc.keras [--export_dir=export/xception71_dpc]
    nasseg-import-checkpoint --model=mobilenetv2_dpc --checkpoint=mobilenet_v2_1.0_224 \
        --num_classes=19 --output=mnv2_dpc_imagenet_backbone.keras
    nasseg-import-checkpoint --model=xception71_dpc --checkpoint=... --num_classes=19 \
        --model_dir=runs/x71_dpc --dataset=cityscapes     # then: nasseg-eval --model_dir=...

The checkpoint (a ``model.ckpt-N`` prefix, or the folder holding it) is read with
TensorFlow and its variables are mapped by their official names (SPEC §7) onto the
model's weights, strictly: every weight must be found with its exact shape, or nothing
is written and the error lists the missing and mismatched names. A whole-model
checkpoint fills the whole model; an ImageNet checkpoint (``xception_65``,
``xception_71``, slim ``mobilenet_v2``) fills the backbone. Checkpoint variables left
unused are reported. ``--skip_logits`` keeps the logits at their initial weights, to
fine-tune to another class count. ``--model_dir`` writes the imported model as a run
folder (``config.gin`` + a step-0 checkpoint) that ``nasseg-eval`` and ``nasseg-predict``
take like a trained run, and ``Training.init_checkpoint`` warm-starts from.
"""

from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("model", None, "A zoo model name (nasseg-zoo list).",
                        flag_values=flag_values)
    flags.DEFINE_string("checkpoint", None, "An official checkpoint prefix or its folder.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_classes", 19, "Classes of the model's logits.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_string("output", None, "The .keras file to write.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "Also write a run folder (config.gin + step-0 "
                        "checkpoint) for nasseg-eval / -predict / -train.",
                        flag_values=flag_values)
    flags.DEFINE_string("dataset", None, "The dataset of the run folder (classes, "
                        "palette), with --model_dir: a registry name or a dataset "
                        "description (dataset.json or its folder).",
                        flag_values=flag_values)
    flags.DEFINE_string("export_dir", None, "Also export a serving SavedModel here.",
                        flag_values=flag_values)
    flags.DEFINE_enum("scope", "auto", ["auto", "model", "backbone"],
                      "What the checkpoint holds: a whole model, an ImageNet backbone, "
                      "or decide from its names.", flag_values=flag_values)
    flags.DEFINE_bool("skip_logits", False, "Leave the logits at their initial weights.",
                      flag_values=flag_values)
    flags.DEFINE_integer("output_stride", None, "The model's output stride (default: the "
                         "zoo entry's).", flag_values=flag_values)
    flags.mark_flags_as_required(["model", "checkpoint"], flag_values=flag_values)


def write_run_folder(model_dir, keras_model, model_config, dataset):
    """A run folder for an imported model: ``config.gin`` and a step-0 checkpoint with
    the architecture's fingerprint (what ``nasseg-eval`` restores)."""
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf

    from nasseg_tf import runfiles
    from nasseg_tf.data.inputs import DataConfig
    from nasseg_tf.train.checkpointing import architecture_variable, variables_by_path

    if tf.train.latest_checkpoint(f"{model_dir}/checkpoints"):
        raise FileExistsError(f"{model_dir} holds a run already; choose a new --model_dir")
    runfiles.write_run_files(model_dir, [model_config,
                                         DataConfig(dataset=dataset).absolute()])
    checkpoint = tf.train.Checkpoint(
        model=variables_by_path(keras_model.variables),
        step=tf.Variable(0, dtype=tf.int64),
        architecture=architecture_variable(model_config.architecture()))
    tf.train.CheckpointManager(checkpoint, f"{model_dir}/checkpoints",
                               max_to_keep=1).save(checkpoint_number=0)


def import_checkpoint(model, checkpoint, num_classes, output, export_dir, scope,
                      skip_logits, output_stride, model_dir, dataset):
    """The tool's body: build, import (all or nothing), then write what was asked."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf import fileio
    from nasseg_tf.data import get_dataset_info
    from nasseg_tf.models import weights, zoo

    if not (output or model_dir or export_dir):
        raise ValueError("give at least one of --output (a .keras file), --model_dir "
                         "(a run folder) or --export_dir (a SavedModel)")
    if output and not output.endswith(".keras"):
        raise ValueError(f"--output must name a .keras file, got {output!r}")
    if model_dir:
        if not dataset:
            raise ValueError("--model_dir needs --dataset (the classes of the run)")
        if get_dataset_info(dataset).num_classes != num_classes:
            raise ValueError(f"--dataset={dataset} has "
                             f"{get_dataset_info(dataset).num_classes} classes, "
                             f"--num_classes is {num_classes}")
    overrides = {} if output_stride is None else {"output_stride": output_stride}
    keras_model = zoo.build(model, num_classes=num_classes, **overrides)
    report = weights.load_official_checkpoint(keras_model, checkpoint, scope=scope,
                                              skip_logits=skip_logits)
    if output:
        with fileio.atomic_path(output, ".keras") as tmp:
            keras_model.save(tmp)
    if model_dir:
        write_run_folder(model_dir, keras_model,
                         zoo.ModelConfig(model, overrides or None), dataset)
    written = " and ".join(p for p in (output, model_dir) if p)
    print(f"nasseg-import-checkpoint: {report['loaded']} weights from "
          f"{report['checkpoint']} ({report['scope']}) into {model}"
          f"{'; wrote ' + written if written else ''}")
    if report["skipped"]:
        print(f"  left at their initial weights: {len(report['skipped'])} "
              f"({', '.join(report['skipped'][:5])}{' ...' if len(report['skipped']) > 5 else ''})")
    if report["unused"]:
        print(f"  checkpoint variables not used: {len(report['unused'])} "
              f"({', '.join(report['unused'][:5])}{' ...' if len(report['unused']) > 5 else ''})")
    if export_dir:
        from nasseg_tf.export import export_saved_model

        export_saved_model(keras_model, export_dir, metadata={
            "model": model, "num_classes": num_classes, "checkpoint": report["checkpoint"]})
        print(f"  exported a SavedModel to {export_dir}")


main = common.make_main("nasseg-import-checkpoint", import_checkpoint)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
