r"""``nasseg-train``: train a zoo model with a gin-configured recipe.

Usage:
    nasseg-train --gin_file=gin/train/autodeeplab_s_cityscapes.gin --model_dir=runs/adl_s
    nasseg-train --gin_file=gin/demo/train_demo.gin --model_dir=runs/demo \
        --gin_bindings="Training.steps = 100" \
        --gin_bindings="Model.genotype = 'runs/search/genotype.json'"

Rerunning the same command resumes from the latest checkpoint in --model_dir. The run
writes command_line.txt, config.gin, operative_config.gin, checkpoints/, train/
(TensorBoard), eval_results.json, pictures/ and model.keras into --model_dir.
"""

import sys


from nasseg_tf.cli import common, flags_common


def _train(FLAGS):
    from nasseg_tf.train import experiment  # pylint: disable=import-outside-toplevel

    experiment.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    metrics = experiment.train(FLAGS.model_dir, argv=sys.argv)["metrics"]
    line = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"nasseg-train: done at step {metrics.get('step')}: {line}")


# NonFiniteLossError is a FloatingPointError (an ArithmeticError): listed explicitly.
main = common.make_main("nasseg-train", _train,
                        errors=(ValueError, OSError, ArithmeticError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, flags_common.define_gin_flags, main)


if __name__ == "__main__":
    run()
