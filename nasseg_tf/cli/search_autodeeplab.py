"""``nasseg-search-autodeeplab``: hierarchical Auto-DeepLab search (cell α + path β).

Usage:
    nasseg-search-autodeeplab --gin_file=gin/search/autodeeplab_demo.gin --model_dir=runs/s
    nasseg-train --gin_file=gin/demo/train_demo.gin --model_dir=runs/retrain \\
        --gin_bindings="Model.genotype = 'runs/s/genotype.json'"

Rerunning resumes from the latest checkpoint (weights, α, β, both optimizers, step,
data position). --model_dir receives genotype.json (updated at every decode),
genotypes/step_*.json, decodes.json (every decode's path and the Multiply-Adds of its
derived network, real and expected; ``Search.cost_target`` makes the search
cost-aware), cell.png, path.png, checkpoints/, train/ and arch/ (TensorBoard),
config.gin, operative_config.gin and run_info.json.

Random baseline (does the search beat chance at equal budget?):
    nasseg-search-autodeeplab --random_baseline=8 --retrain_dir=runs/retrain \
        --model_dir=runs/baseline [--baseline_seed=0]

draws 8 distinct architectures uniformly from the searched space (cell, and path
uniform over the legal paths), retrains each from scratch with the retrain run's
exact configuration (its config.gin: steps, batch, crop, schedule, data; --gin_file /
--gin_bindings apply on top, to the searched model's evaluation as well), and reports
the searched model's mIoU against theirs (mean, std, min, max, its rank) in
--model_dir/random_baseline.json. A rerun resumes at the first unfinished one.
"""

import os
import sys

from absl import flags

from nasseg_tf.cli import common


def define_flags(flag_values=flags.FLAGS):
    common.define_gin_flags(flag_values)
    flags.DEFINE_integer("random_baseline", 0, "K > 0: instead of searching, retrain K "
                         "random architectures at the budget of --retrain_dir.",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_string("retrain_dir", None, "The nasseg-train run of the searched "
                        "genotype (with --random_baseline).", flag_values=flag_values)
    flags.DEFINE_integer("baseline_seed", 0, "Seed of the random architectures.",
                         flag_values=flag_values)


def searched_result(retrain_dir, groups):
    """The searched genotype and its mIoU after the retrain run's full budget (its
    ``eval_results.json`` of the last step, else an evaluation of its checkpoint)."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf import fileio
    from nasseg_tf.search_space.genotypes import NetworkGenotype
    from nasseg_tf.train import experiment

    model, training = groups["model"], groups["training"]
    genotype = model.architecture(base_dir=retrain_dir)["genotype"]
    if genotype is None:
        raise ValueError(f"{retrain_dir}/config.gin: Model has no genotype; "
                         "--retrain_dir must be a retrain of a searched genotype")
    results_path = os.path.join(retrain_dir, "eval_results.json")
    results = fileio.read_json(results_path) if fileio.exists(results_path) else {}
    if results.get("step") != training.steps:
        results = experiment.evaluate_model_dir(
            retrain_dir, model, groups["data"], groups["evaluation"], progress=False)
    if results.get("step") != training.steps:
        raise ValueError(f"{retrain_dir}: trained {results.get('step')} of "
                         f"{training.steps} steps; finish the retrain first")
    return NetworkGenotype.from_config(genotype), float(results["miou"])


def baseline(gin_file, gin_bindings, model_dir, retrain_dir, count, seed):
    """``--random_baseline``: retrain ``count`` random architectures, print the report."""
    if not retrain_dir:
        raise ValueError("--random_baseline needs --retrain_dir (the nasseg-train run of "
                         "the searched genotype)")
    # pylint: disable=import-outside-toplevel
    import dataclasses

    from nasseg_tf.cli import configs
    from nasseg_tf.search.autodeeplab import baseline as baseline_lib

    configs.load_run(retrain_dir, gin_file, gin_bindings)
    groups = configs.bound("model", "data", "training", "evaluation")
    genotype, miou = searched_result(retrain_dir, groups)
    data = groups["data"].in_run(retrain_dir)
    result = baseline_lib.random_baseline(
        model_dir, genotype,
        baseline_lib.make_retrain_fn(groups["model"], data, groups["training"],
                                     groups["evaluation"]),
        count, seed=seed, searched_miou=miou,
        settings={"training": dataclasses.asdict(groups["training"]),
                  "evaluation": dataclasses.asdict(groups["evaluation"])})
    print("nasseg-search-autodeeplab: random baseline")
    for line in baseline_lib.report_lines(result):
        print(f"  {line}")
    print(f"  results: {model_dir}/{baseline_lib.RESULTS_FILE}")


def search(gin_file, gin_bindings, model_dir, random_baseline=0, retrain_dir=None,
           baseline_seed=0):
    """The tool's body: run the search, print the decoded architecture (or, with
    ``random_baseline``, the random baseline of a retrained search)."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli import configs

    if random_baseline:
        return baseline(gin_file, gin_bindings, model_dir, retrain_dir, random_baseline,
                        baseline_seed)
    if retrain_dir:
        raise ValueError("--retrain_dir is only used with --random_baseline=K")
    from nasseg_tf.search.autodeeplab import run as autodeeplab_run

    configs.parse(gin_file, gin_bindings)
    out = autodeeplab_run.run_search(model_dir, argv=sys.argv, log=print,
                                     **configs.bound("search", "supernet", "data"))
    configs.write_operative_config(model_dir)
    genotype = out["genotype"]
    print("nasseg-search-autodeeplab: decoded architecture")
    for line in genotype.describe():
        print(f"  {line}")
    if out["derived_madds"] is not None:
        print(f"  derived network: {out['derived_madds']:,} Multiply-Adds (every decode: "
              f"{model_dir}/{autodeeplab_run.DECODES_FILE})")
    print(f"  genotype: {model_dir}/genotype.json (retrain: nasseg-train ... "
          f"--gin_bindings=\"Model.genotype = '{model_dir}/genotype.json'\")")


main = common.make_main("nasseg-search-autodeeplab", search,
                        errors=(ValueError, OSError, ArithmeticError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
