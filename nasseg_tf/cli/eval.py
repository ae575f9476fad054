r"""``nasseg-eval``: evaluate a training run's checkpoint (mIoU, per-class IoU, accuracy).

Usage:
    nasseg-eval --model_dir=runs/adl_s
    nasseg-eval --model_dir=runs/adl_s --gin_bindings="Evaluation.scales = (0.75, 1.0, 1.25)" \
        --gin_bindings="Evaluation.flip = True"

The run's own config.gin is read first; --gin_file / --gin_bindings apply on top.
Results go to --model_dir/eval_results.json, pictures to --model_dir/pictures/.
"""

import json

from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    common.define_gin_flags(flag_values)
    flags.DEFINE_string("checkpoint", None, "A checkpoint path (default: the latest).",
                        flag_values=flag_values)


def evaluate(gin_file, gin_bindings, model_dir, checkpoint):
    """The tool's body: evaluate the run's checkpoint, print the main figures."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli import configs
    from nasseg_tf.train import experiment

    configs.load_run(model_dir, gin_file, gin_bindings)
    results = experiment.evaluate_model_dir(
        model_dir, checkpoint=checkpoint, **configs.bound("model", "data", "evaluation"))
    print(json.dumps({k: results[k] for k in ("miou", "pixel_accuracy", "num_images",
                                               "step") if k in results}))


main = common.make_main("nasseg-eval", evaluate)


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
