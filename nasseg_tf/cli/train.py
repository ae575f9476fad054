r"""``nasseg-train``: train a zoo model with a gin-configured recipe.

Usage:
    nasseg-train --gin_file=train/autodeeplab_s_cityscapes.gin --model_dir=runs/adl_s
    nasseg-train --gin_file=demo/train_demo.gin --model_dir=runs/demo \
        --gin_bindings="Training.steps = 100" \
        --gin_bindings="Model.genotype = 'runs/search/genotype.json'"

--gin_file takes a path or the name of a recipe shipped with the package (``train/...``,
``search/...``, ``demo/...``: see ``nasseg_tf/gin/``). The configuration is checked
before anything is written. Rerunning the same command resumes from the latest
checkpoint in --model_dir. The run writes command_line.txt, config.gin (the resolved
configuration), the genotype / DPC cell it trains (genotype.json, dpc_cell.json),
operative_config.gin, run_info.json, checkpoints/, train/ (TensorBoard),
eval_results.json, pictures/ and model.keras into --model_dir.
"""

import sys

from nasseg_tf.cli import common


def train(gin_file, gin_bindings, model_dir):
    """The tool's body: parse the recipe, train, print the last step's figures."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli import configs
    from nasseg_tf.train import experiment

    configs.parse(gin_file, gin_bindings)
    # Checked before anything is written (run folder, generated demo data).
    groups = configs.checked("model", "data", "training", "evaluation")
    metrics = experiment.train(model_dir, argv=sys.argv, **groups)["metrics"]
    configs.write_operative_config(model_dir)
    line = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"nasseg-train: done at step {metrics.get('step')}: {line}")


# DivergedError is a FloatingPointError (an ArithmeticError): listed explicitly.
main = common.make_main("nasseg-train", train,
                        errors=(ValueError, OSError, ArithmeticError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, common.define_gin_flags, main)


if __name__ == "__main__":
    run()
