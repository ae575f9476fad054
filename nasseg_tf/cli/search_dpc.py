"""``nasseg-search-dpc``: Dense Prediction Cell search (random search on a proxy task).

Usage:
    nasseg-search-dpc --gin_file=gin/search/dpc_demo.gin --project_dir=runs/dpc
    nasseg-train --gin_file=... --gin_bindings="Model.dpc_cell = 'runs/dpc/best_cell.json'"

Distributed (KerasTuner): run the same command once as the chief and once per worker,
all with KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set to the chief's address and
KERASTUNER_TUNER_ID=chief on the chief, tuner0, tuner1, ... on the workers. A worker
restarted with its old id resumes its trial; a restarted chief resumes the search.

Rerunning resumes (the oracle's state is in --project_dir). --project_dir receives
oracle.json and trial_<id>/ (trial.json, cell.json, result.json), leaderboard.csv/.json,
top_cells/, best_cell.json, rerank.json (DPCSearch.rerank_top_k > 0),
random_baseline.json (DPCSearch.random_baseline > 0), best_cell.png and
search_progress.png (pictures), tensorboard/ (val mIoU per trial, best so far, the best
cell), config.gin and operative_config.gin. `DPCSearch.objective = 'synthetic'` runs the search machinery on a
cheap synthetic score (tests, dry runs).
"""

import importlib
import sys

from absl import flags

from nasseg_tf.cli import common


def define_flags():
    flags.DEFINE_multi_string("gin_file", [], "gin files, applied in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "gin bindings applied after the files, "
                              "e.g. \"DPCSearch.max_trials = 20\".")
    flags.DEFINE_string("project_dir", None, "The search's folder (resumed if it exists).")
    flags.mark_flag_as_required("project_dir")


def _search(FLAGS):
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.search import dpc_tuner  # gin: DPCSearch, ProxyBackbone, ...
    from nasseg_tf.train import experiment

    importlib.import_module("nasseg_tf.search.dpc_proxy")  # gin: Proxy
    experiment.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    out = dpc_tuner.run_search(FLAGS.project_dir, argv=sys.argv)
    if out["role"] == "worker":
        print("nasseg-search-dpc: worker done")
        return
    rows = out["leaderboard"]
    print(f"nasseg-search-dpc: {len(rows)} completed trials; leaderboard: "
          f"{FLAGS.project_dir}/leaderboard.csv")
    for row in rows[:5]:
        print(f"  #{row['rank']} trial {row['trial_id']} val_miou {row['val_miou']:.4f}  "
              f"{row['describe']}")
    if rows:
        best = f"{FLAGS.project_dir}/best_cell.json"
        print(f"  best cell: {best} (train it: nasseg-train ... "
              f"--gin_bindings=\"Model.dpc_cell = '{best}'\")")
    if out["baseline"] is not None:
        base = out["baseline"]
        print(f"  random baseline: median of {base['count']} random cells "
              f"{base['median_random_miou']:.4f} vs best searched "
              f"{base['best_searched_miou']:.4f} "
              f"({'beats' if base['best_beats_median'] else 'does NOT beat'} the median; "
              f"{FLAGS.project_dir}/random_baseline.json)")
    if out["rerank"] is not None:
        rho = out["rerank"]["spearman"]
        print(f"  re-ranked top {len(out['rerank']['entries'])}: best trial "
              f"{out['rerank']['best']['trial_id']}; Spearman rho(proxy, fine-tuned) = "
              f"{'n/a' if rho is None else f'{rho:.3f}'} ({FLAGS.project_dir}/rerank.json)")


main = common.make_main("nasseg-search-dpc", _search,
                        errors=(ValueError, OSError, ArithmeticError, RuntimeError))


def run():
    """Console-script entry point."""
    common.run_tool(__doc__, define_flags, main)


if __name__ == "__main__":
    run()
