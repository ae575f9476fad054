"""``nasseg-search-autodeeplab``: hierarchical Auto-DeepLab search (cell α + path β).

Usage:
    nasseg-search-autodeeplab --gin_file=gin/search/autodeeplab_demo.gin --model_dir=runs/s
    nasseg-train --gin_file=gin/demo/train_demo.gin --model_dir=runs/retrain \\
        --gin_bindings="Model.genotype = 'runs/s/genotype.json'"

Rerunning resumes from the latest checkpoint (weights, α, β, both optimizers, step,
data position). --model_dir receives genotype.json (updated at every decode),
genotypes/step_*.json, cell.png, path.png, checkpoints/, train/ and arch/ (TensorBoard).
"""

import sys

from nasseg_tf.cli import common, flags_common


def _search(FLAGS):
    from nasseg_tf.search import autodeeplab_search  # pylint: disable=import-outside-toplevel
    from nasseg_tf.train import experiment  # pylint: disable=import-outside-toplevel

    experiment.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    out = autodeeplab_search.search(FLAGS.model_dir, argv=sys.argv)
    genotype = out["genotype"]
    print("nasseg-search-autodeeplab: decoded architecture")
    for line in genotype.describe():
        print(f"  {line}")
    print(f"  genotype: {FLAGS.model_dir}/genotype.json (retrain: nasseg-train ... "
          f"--gin_bindings=\"Model.genotype = '{FLAGS.model_dir}/genotype.json'\")")


main = common.make_main("nasseg-search-autodeeplab", _search,
                        errors=(ValueError, OSError, ArithmeticError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, flags_common.define_gin_flags, main)


if __name__ == "__main__":
    run()
