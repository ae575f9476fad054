"""``nasseg-search-dpc``: Dense Prediction Cell search (random search on a proxy task).

Usage:
    nasseg-search-dpc --gin_file=gin/search/dpc_demo.gin --model_dir=runs/dpc
    nasseg-train --gin_file=... --gin_bindings="Model.dpc_cell = 'runs/dpc/best_cell.json'"

Distributed (KerasTuner): run the same command once as the chief and once per worker,
all with KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set to the chief's address and
KERASTUNER_TUNER_ID=chief on the chief, tuner0, tuner1, ... on the workers. A worker
restarted with its old id resumes its trial; a restarted chief resumes the search.

Rerunning resumes (the oracle's state is in --model_dir; --project_dir is its old
name, still accepted). --model_dir receives
oracle.json and trial_<id>/ (trial.json, cell.json, result.json), leaderboard.csv/.json,
top_cells/, best_cell.json, rerank.json (DPCSearch.rerank_top_k > 0),
random_baseline.json (DPCSearch.random_baseline > 0), backbone/ (the proxy backbone
trained on the task first, DPCSearch.backbone_steps > 0), best_cell.png and
search_progress.png (pictures), tensorboard/ (val mIoU per trial, best so far, the best
cell), config.gin and operative_config.gin. `DPCSearch.objective = 'synthetic'` runs the search machinery on a
cheap synthetic score (tests, dry runs).
"""

import sys

from absl import flags

from nasseg_tf.cli import common


def define_flags():
    common.define_gin_flags(model_dir_required=False)
    flags.DEFINE_string("project_dir", None, "Old name of --model_dir.")


def search(gin_file, gin_bindings, model_dir, project_dir):
    """The tool's body: run the search (chief, worker or alone), print the results."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.cli import configs
    from nasseg_tf.search.dpc import run as dpc_run

    if bool(model_dir) == bool(project_dir):
        raise ValueError("give --model_dir (the search's folder)")
    model_dir = model_dir or project_dir
    configs.parse(gin_file, gin_bindings)
    groups = configs.bound("data", "proxy", "backbone", "synthetic", "cost")
    out = dpc_run.run_search(model_dir, search=configs.get("dpc_search"), argv=sys.argv,
                             **groups)
    if out["role"] == "worker":
        print("nasseg-search-dpc: worker done")
        return
    configs.write_operative_config(model_dir)
    rows = out["leaderboard"]
    print(f"nasseg-search-dpc: {len(rows)} completed trials; leaderboard: "
          f"{model_dir}/leaderboard.csv")
    for row in rows[:5]:
        score = (f" score {row['score']:.4f}" if row["score"] != row["val_miou"]
                 else "")  # a cost-scored objective ranks by the score
        print(f"  #{row['rank']} trial {row['trial_id']} val_miou {row['val_miou']:.4f}"
              f"{score}  {row['describe']}")
    if rows:
        best = f"{model_dir}/best_cell.json"
        print(f"  best cell: {best} (train it: nasseg-train ... "
              f"--gin_bindings=\"Model.dpc_cell = '{best}'\")")
    if out["baseline"] is not None:
        base = out["baseline"]
        print(f"  random baseline: median {base['ranked_by']} of {base['count']} random "
              f"cells {base['median_random']:.4f} vs best searched "
              f"{base['best_searched']:.4f} "
              f"({'beats' if base['best_beats_median'] else 'does NOT beat'} the median; "
              f"{model_dir}/random_baseline.json)")
    if out["rerank"] is not None:
        rho, interval = out["rerank"]["spearman"], out["rerank"].get("spearman_interval")
        rho = "n/a" if rho is None else f"{rho:.3f}"
        if interval:
            rho += f" (90% bootstrap interval {interval[0]:.3f} to {interval[1]:.3f})"
        print(f"  re-ranked {len(out['rerank']['entries'])} cells: best trial "
              f"{out['rerank']['best']['trial_id']}; Spearman rho(proxy, fine-tuned) = "
              f"{rho} ({model_dir}/rerank.json)")


main = common.make_main("nasseg-search-dpc", search,
                        errors=(ValueError, OSError, ArithmeticError, RuntimeError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
