"""``nasseg-search-autodeeplab``: hierarchical Auto-DeepLab search (cell α + path β).

Usage:
    nasseg-search-autodeeplab --gin_file=gin/search/autodeeplab_demo.gin --model_dir=runs/s
    nasseg-train --gin_file=gin/demo/train_demo.gin --model_dir=runs/retrain \\
        --gin_bindings="Model.genotype = 'runs/s/genotype.json'"

Rerunning resumes from the latest checkpoint (weights, α, β, both optimizers, step,
data position). --model_dir receives genotype.json (updated at every decode),
genotypes/step_*.json, cell.png, path.png, checkpoints/, train/ and arch/ (TensorBoard),
config.gin, operative_config.gin and run_info.json.
"""

import sys

from nasseg_tf.cli import common


def search(gin_file, gin_bindings, model_dir):
    """The tool's body: run the search, print the decoded architecture."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli import configs
    from nasseg_tf.search.autodeeplab import run as autodeeplab_run

    configs.parse(gin_file, gin_bindings)
    out = autodeeplab_run.run_search(model_dir, argv=sys.argv,
                                     **configs.bound("search", "supernet", "data"))
    configs.write_operative_config(model_dir)
    genotype = out["genotype"]
    print("nasseg-search-autodeeplab: decoded architecture")
    for line in genotype.describe():
        print(f"  {line}")
    print(f"  genotype: {model_dir}/genotype.json (retrain: nasseg-train ... "
          f"--gin_bindings=\"Model.genotype = '{model_dir}/genotype.json'\")")


main = common.make_main("nasseg-search-autodeeplab", search,
                        errors=(ValueError, OSError, ArithmeticError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, common.define_gin_flags, main)


if __name__ == "__main__":
    run()
