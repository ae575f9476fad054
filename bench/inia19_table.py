r"""Does the search help? Searched vs random vs hand-designed on ``inia19_neuromaps``.

The README's "Does the search help?" table, reproduced from a clean clone by one
command (after ``make install`` or ``pip install -e .``)::

    python bench/inia19_table.py [--output_dir=~/.cache/nasseg_tf/bench_inia19]
                                 [--seeds=3] [--random=3] [--record=bench/inia19_table.json]

It runs, with the installed console tools and the recipes under ``gin/bench/``:

1. ``data``: ``bench/real_data.py`` builds the benchmark (24 classes, 129x129 coronal
   slices of the INIA19 macaque T1, slab split; see that script).
2. **Auto-DeepLab block**, every network trained from scratch with one budget
   (400 steps, batch 8, 129x129 crops, poly schedule from 0.05; the recipes
   ``bench/inia19_mobilenetv2_aspp.gin`` and ``bench/inia19_autodeeplab.gin``):
   ``adl_search`` (``nasseg-search-autodeeplab``, ``bench/inia19_autodeeplab_search.gin``:
   L=4, F=4, 65x65 crops, 300 steps), the searched genotype retrained with
   ``--seeds`` seeds (``adl_searched_s<k>``), ``--random`` random architectures
   (cell and path, uniform; ``nasseg-search-autodeeplab --random_baseline``) retrained
   with seed 0's exact budget, and the hand-designed MobileNet-v2 + ASPP
   (``mnv2_aspp_s<k>``, ``--seeds`` seeds).
3. **DPC block**, the paper's chain: ``mnv2_aspp_s0`` is the proxy backbone;
   ``dpc_search`` (``nasseg-search-dpc``, ``bench/inia19_dpc_search.gin``) caches its
   features, trains 20 random cells on them, re-ranks 8 cells spread over the proxy
   ranking as whole MobileNet-v2 + DPC models fine-tuned from the backbone (Spearman
   rho with a 90% bootstrap interval) and scores 3 fresh random cells on the proxy.
   Then, at the re-ranking's exact budget and from the same backbone
   (:func:`nasseg_tf.search.dpc.rerank.finetune_and_evaluate`): the published DPC cell
   (``dpc_published``), ASPP (``dpc_aspp``) and the ``--random`` fresh random cells as
   whole models (``dpc_random_<i>``).

Each row's command runs in a subprocess; its wall time and CPU time (user + system of
the process tree) go to ``{output_dir}/table.json`` when it finishes (atomically), with
its result. A rerun skips finished rows and reruns an unfinished one, whose tools resume
from their own checkpoints (the CPU time then counts the last attempt only). Logs:
``{output_dir}/logs/<row>.log``. At the end (and with ``--table`` at any time) the
Markdown table is printed and written to ``{output_dir}/table.md``; ``--record`` also
writes the figures as JSON (the repository keeps ``bench/inia19_table.json``).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT_DIR = os.path.join("~", ".cache", "nasseg_tf", "bench_inia19")
MNV2_GIN = "bench/inia19_mobilenetv2_aspp.gin"
ADL_GIN = "bench/inia19_autodeeplab.gin"
ADL_SEARCH_GIN = "bench/inia19_autodeeplab_search.gin"
DPC_SEARCH_GIN = "bench/inia19_dpc_search.gin"
#: The hand-designed ASPP head fine-tuned like a re-ranked cell (the backbone's rates).
ASPP_OVERRIDES = {"aspp_rates": (2, 4, 6)}


#: ``--quick``: every budget cut to a few steps (checks the chain end to end in minutes;
#: its figures mean nothing). Bindings of groups a tool does not use are ignored by it.
QUICK_BINDINGS = ("Training.steps = 6", "Training.checkpoint_every = 3",
                  "Search.steps = 4", "Search.warmup_steps = 2",
                  "Search.checkpoint_every = 2", "Search.decode_every = 2",
                  "Proxy.steps = 6", "DPCSearch.max_trials = 3",
                  "DPCSearch.early_stopping_min_trials = 2", "DPCSearch.rerank_top_k = 2",
                  "DPCSearch.rerank_steps = 3", "DPCSearch.random_baseline = 2")


class TableError(ValueError):
    """Bad input or a failed row: the message names it."""


def tool(name):
    """The installed console script ``name`` beside this Python, else on PATH."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if not found:
        raise TableError(f"{name}: console script not found (install the package: "
                         f"pip install -e .)")
    return found


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    from nasseg_tf.fileio import atomic_write_json
    atomic_write_json(path, value, indent=2)


# --------------------------------------------------------------------------------------
# The rows.


class Plan:
    """Paths and commands of every row, in the order they run."""

    def __init__(self, output_dir, seeds, random, quick=False):
        self.out = output_dir
        self.seeds, self.random = int(seeds), int(random)
        self.quick = quick
        self.data = os.path.join(output_dir, "data", "tfrecord")

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def bindings(self, *extra):
        extra = list(extra) + (list(QUICK_BINDINGS) if self.quick else [])
        args = [f"--gin_bindings=Data.dataset = '{self.data}'"]
        return args + [f"--gin_bindings={b}" for b in extra]

    def rows(self):
        """``[(name, argv)]``; the ones the table needs most come first."""
        seed_rows = lambda k: [  # noqa: E731
            (f"adl_searched_s{k}", self.train(ADL_GIN, f"adl_searched_s{k}", k,
                                              f"Model.genotype = '{self.genotype}'")),
            (f"mnv2_aspp_s{k}", self.train(MNV2_GIN, f"mnv2_aspp_s{k}", k))]
        rows = [("data", [sys.executable, os.path.join(HERE, "real_data.py"),
                          f"--output_dir={self.path('data')}"]),
                ("mnv2_aspp_s0", self.train(MNV2_GIN, "mnv2_aspp_s0", 0)),
                ("adl_search", [tool("nasseg-search-autodeeplab"),
                                f"--gin_file={ADL_SEARCH_GIN}",
                                f"--model_dir={self.path('adl_search')}"] + self.bindings()),
                seed_rows(0)[0],
                ("dpc_search", [tool("nasseg-search-dpc"), f"--gin_file={DPC_SEARCH_GIN}",
                                f"--model_dir={self.path('dpc_search')}"]
                 + self.bindings(f"ProxyBackbone.weights = '{self.backbone}'",
                                 f"DPCSearch.rerank_init_checkpoint = '{self.backbone}'")),
                ("dpc_published", self.finetune("published")),
                ("dpc_aspp", self.finetune("aspp")),
                ("adl_random", [tool("nasseg-search-autodeeplab"), f"--gin_file={ADL_SEARCH_GIN}",
                                f"--random_baseline={self.random}",
                                f"--retrain_dir={self.path('adl_searched_s0')}",
                                f"--model_dir={self.path('adl_random')}"] + self.bindings())]
        rows += [(f"dpc_random_{i}", self.finetune(f"random_{i}")) for i in range(self.random)]
        for k in range(1, self.seeds):
            rows += seed_rows(k)
        return rows

    @property
    def genotype(self):
        return self.path("adl_search", "genotype.json")

    @property
    def backbone(self):
        return self.path("mnv2_aspp_s0")

    def train(self, gin_file, name, seed, *bindings):
        return ([tool("nasseg-train"), f"--gin_file={gin_file}",
                 f"--model_dir={self.path(name)}"]
                + self.bindings(f"Training.seed = {seed}", *bindings))

    def finetune(self, which):
        return [sys.executable, os.path.abspath(__file__), f"--output_dir={self.out}",
                f"--finetune={which}"]


def run_row(plan, name, argv, state):
    """Runs one row's command; records wall and CPU time; raises on failure."""
    os.makedirs(plan.path("logs"), exist_ok=True)
    log = plan.path("logs", f"{name}.log")
    print(f"[table] {name}: {os.path.basename(argv[0])} ... (log: {log})", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, cwd=plan.out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise TableError(f"row {name} failed with exit status {code} (log: {log})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    state["rows"][name] = {"wall_s": round(time.time() - start, 1), "cpu_s": round(cpu, 1),
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(plan.path("table.json"), state)
    print(f"[table] {name}: done in {time.time() - start:.0f} s ({cpu:.0f} CPU-s)",
          flush=True)


# --------------------------------------------------------------------------------------
# The whole-model fine-tunes of the DPC block (run in their own process).


def finetune(plan, which):
    """``dpc_published`` / ``dpc_aspp`` / ``dpc_random_<i>``: fine-tuned from the proxy
    backbone with the re-ranking's settings (read back from ``dpc_search/rerank.json``,
    so the budget is the re-ranked cells' own)."""
    from nasseg_tf.data.inputs import DataConfig
    from nasseg_tf.models import zoo
    from nasseg_tf.search.dpc import rerank
    from nasseg_tf.search_space.dpc import DPCCell, load_dpc_cell

    search_dir = plan.path("dpc_search")
    settings = read_json(os.path.join(search_dir, "rerank.json"))["settings"]
    info, train, val = DataConfig(dataset=plan.data).resolve(search_dir)
    steps = settings["steps"]
    overrides = rerank.rerank_overrides(settings["model_overrides"], steps)
    if which == "aspp":
        aspp = rerank.rerank_overrides(dict(ASPP_OVERRIDES, context_filters=overrides.get(
            "context_filters", 256)), steps)
        model_fn = lambda: zoo.build("mobilenetv2_aspp", num_classes=info.num_classes,  # noqa: E731
                                     **aspp)
    else:
        if which == "published":
            cell = load_dpc_cell("dpc_top1_cityscapes")
        else:
            index = int(which.split("_")[1])
            entries = read_json(os.path.join(search_dir, "random_baseline.json"))["entries"]
            cell = DPCCell.from_config(entries[index]["cell"], which)
        model_fn = lambda: rerank.build_rerank_model(  # noqa: E731
            cell, info.num_classes, settings["model"], overrides)
    work_dir = plan.path("dpc_refs", which)
    os.makedirs(work_dir, exist_ok=True)
    result = rerank.finetune_and_evaluate(
        model_fn, info, train, val, work_dir, steps, settings["batch_size"],
        settings["crop_size"], settings["learning_rate"],
        eval_images=settings["eval_images"], init_checkpoint=settings["init_checkpoint"])
    print(f"{which}: mIoU {result['miou']:.4f}")


# --------------------------------------------------------------------------------------
# The table.


def _miou(path):
    return float(read_json(path)["miou"]) if os.path.exists(path) else None


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return {"n": len(a), "mean": float(a.mean()),
            "std": float(a.std(ddof=1)) if len(a) > 1 else None,
            "min": float(a.min()), "max": float(a.max()), "values": [float(v) for v in a]}


def _majority(plan):
    from nasseg_tf.train.metrics import majority_class_baseline
    described = os.path.join(plan.data, "dataset.json")
    if not os.path.exists(described):
        return None
    counts = read_json(described)["splits"]["val"]["pixel_counts"]
    return float(majority_class_baseline(np.diag(np.asarray(counts, float)))["miou"])


def collect(plan, state):
    """The figures of every finished row."""
    rows, seeds = state["rows"], range(plan.seeds)
    cpu_h = lambda *names: round(sum(rows[n]["cpu_s"] for n in names if n in rows)  # noqa: E731
                                 / 3600.0, 3)
    eval_of = lambda name: _miou(plan.path(name, "eval_results.json"))  # noqa: E731
    figures = {"majority_class_miou": _majority(plan), "adl": {}, "dpc": {}}
    adl = figures["adl"]
    adl["searched"] = _stats([eval_of(f"adl_searched_s{k}") for k in seeds])
    adl["mnv2_aspp"] = _stats([eval_of(f"mnv2_aspp_s{k}") for k in seeds])
    random_file = plan.path("adl_random", "random_baseline.json")
    if os.path.exists(random_file):
        result = read_json(random_file)
        adl["random"] = _stats([e["miou"] for e in result["entries"]])
        adl["random_summary"] = result["summary"]
    if os.path.exists(plan.genotype):
        adl["genotype"] = read_json(plan.genotype)
    adl["cpu_h"] = {"search": cpu_h("adl_search"),
                    "retrain_each": cpu_h("adl_searched_s0"),
                    "mnv2_aspp_each": cpu_h("mnv2_aspp_s0"),
                    "random_all": cpu_h("adl_random")}
    dpc = figures["dpc"]
    rerank_file = plan.path("dpc_search", "rerank.json")
    if os.path.exists(rerank_file):
        result = read_json(rerank_file)
        entries = result["entries"]
        top = min(entries, key=lambda e: e["proxy_rank"])
        dpc["proxy_top1"] = {"proxy_miou": top["proxy_miou"], "miou": top["rerank_miou"],
                             "describe": top["describe"]}
        dpc["proxy_top1_cell"] = top.get("cell")
        dpc["rerank_winner"] = {"proxy_rank": result["best"]["proxy_rank"],
                                "miou": result["best"]["rerank_miou"]}
        dpc["reranked"] = _stats([e["rerank_miou"] for e in entries])
        dpc["proxy_ranks"] = [e["proxy_rank"] for e in entries]
        dpc["spearman"] = result["spearman"]
        dpc["spearman_interval"] = result["spearman_interval"]
        dpc["rerank_settings"] = result["settings"]
    dpc["random_cells"] = _stats([_miou(plan.path("dpc_refs", f"random_{i}",
                                                  "eval_results.json"))
                                  for i in range(plan.random)])
    dpc["published"] = _miou(plan.path("dpc_refs", "published", "eval_results.json"))
    dpc["aspp"] = _miou(plan.path("dpc_refs", "aspp", "eval_results.json"))
    proxy_random = plan.path("dpc_search", "random_baseline.json")
    if os.path.exists(proxy_random):
        result = read_json(proxy_random)
        dpc["proxy_random_median"] = result["median_random_miou"]
        dpc["proxy_best"] = result["best_searched_miou"]
    dpc["cpu_h"] = {"backbone": cpu_h("mnv2_aspp_s0"), "search_and_rerank": cpu_h("dpc_search"),
                    "finetune_each": cpu_h("dpc_published")}
    figures["rows"] = rows
    return figures


def _count_saved(path, size):
    """Multiply-Adds (millions) and params (millions) of a saved ``model.keras``."""
    if not os.path.exists(path):
        return None
    import importlib
    import keras
    from nasseg_tf import counting
    importlib.import_module("nasseg_tf.models.zoo")  # registers the package's layers
    report = counting.count(keras.saving.load_model(path, compile=False), size)
    keras.backend.clear_session()
    return {"madds_m": round(report.madds / 1e6, 1), "params_m": round(report.params / 1e6, 3)}


def _count_dpc(plan, cell_config, size, aspp=False):
    """The same for a DPC-block model built as the re-ranking builds it."""
    import keras
    from nasseg_tf import counting
    from nasseg_tf.models import zoo
    from nasseg_tf.search.dpc import rerank
    from nasseg_tf.search_space.dpc import DPCCell
    settings = read_json(plan.path("dpc_search", "rerank.json"))["settings"]
    overrides = rerank.rerank_overrides(settings["model_overrides"], settings["steps"])
    num_classes = read_json(os.path.join(plan.data, "dataset.json"))["num_classes"]
    if aspp:
        model = zoo.build("mobilenetv2_aspp", num_classes=num_classes, **dict(
            ASPP_OVERRIDES, context_filters=overrides.get("context_filters", 256)))
    else:
        model = rerank.build_rerank_model(DPCCell.from_config(cell_config), num_classes,
                                          settings["model"], overrides)
    report = counting.count(model, size)
    keras.backend.clear_session()
    return {"madds_m": round(report.madds / 1e6, 1), "params_m": round(report.params / 1e6, 3)}


def costs(plan, figures, size=(129, 129)):
    """Multiply-Adds and params at ``size`` of the compared networks (equal budget in
    steps is not equal compute): ``figures["costs"]``."""
    from nasseg_tf.search_space.dpc import load_dpc_cell
    out = {"input_size": list(size)}
    out["adl_searched"] = _count_saved(plan.path("adl_searched_s0", "model.keras"), size)
    out["mnv2_aspp"] = _count_saved(plan.path("mnv2_aspp_s0", "model.keras"), size)
    out["adl_random"] = [c for c in (_count_saved(plan.path(
        "adl_random", f"random_{i:03d}", "model.keras"), size) for i in range(plan.random))
        if c]
    if os.path.exists(plan.path("dpc_search", "rerank.json")):
        top = figures["dpc"].get("proxy_top1_cell")
        out["dpc_proxy_top1"] = _count_dpc(plan, top, size) if top else None
        out["dpc_published"] = _count_dpc(
            plan, load_dpc_cell("dpc_top1_cityscapes").to_config(), size)
        out["dpc_aspp"] = _count_dpc(plan, None, size, aspp=True)
    figures["costs"] = out


def _cost(figures, key):
    value = figures.get("costs", {}).get(key)
    if isinstance(value, list):
        if not value:
            return "—"
        return f"{np.mean([v['madds_m'] for v in value]):.0f} (mean)"
    return "—" if not value else f"{value['madds_m']:.0f}"


def _fmt(stats):
    if stats is None:
        return "—"
    if stats["n"] == 1:
        return f"{stats['mean']:.3f} (n = 1)"
    return (f"{stats['mean']:.3f} ± {stats['std']:.3f} (n = {stats['n']}; "
            f"{stats['min']:.3f}–{stats['max']:.3f})")


def _one(value):
    return "—" if value is None else f"{value:.3f}"


def markdown(figures):
    adl, dpc = figures["adl"], figures["dpc"]
    ah, dh = adl["cpu_h"], dpc["cpu_h"]
    c = lambda key: _cost(figures, key)  # noqa: E731
    lines = ["| block | network | val mIoU (mean ± std; range) | MAdds (M, 129²) | CPU-hours |",
             "|---|---|---|---|---|",
             f"| Auto-DeepLab, from scratch | searched (cell + path) | {_fmt(adl['searched'])} "
             f"| {c('adl_searched')} | search {ah['search']}, retrain {ah['retrain_each']} each |",
             f"| | random architectures | {_fmt(adl.get('random'))} | {c('adl_random')} | "
             f"{ah['random_all']} for all |",
             f"| | MobileNet-v2 + ASPP (hand-designed) | {_fmt(adl['mnv2_aspp'])} | "
             f"{c('mnv2_aspp')} | {ah['mnv2_aspp_each']} each |"]
    top = dpc.get("proxy_top1") or {}
    winner = dpc.get("rerank_winner") or {}
    lines += [
        f"| DPC, fine-tuned from the trained backbone | proxy's top-1 cell | "
        f"{_one(top.get('miou'))} | {c('dpc_proxy_top1')} | backbone {dh['backbone']}, "
        f"search + re-rank {dh['search_and_rerank']} |",
        f"| | re-rank winner (proxy rank {winner.get('proxy_rank', '—')}) | "
        f"{_one(winner.get('miou'))} | | |",
        f"| | re-ranked cells (proxy ranks {dpc.get('proxy_ranks', '—')}) | "
        f"{_fmt(dpc.get('reranked'))} | | |",
        f"| | fresh random cells | {_fmt(dpc.get('random_cells'))} | | "
        f"{dh['finetune_each']} each |",
        f"| | published DPC cell (Cityscapes top-1) | {_one(dpc.get('published'))} | "
        f"{c('dpc_published')} | |",
        f"| | ASPP (hand-designed) | {_one(dpc.get('aspp'))} | {c('dpc_aspp')} | |",
        "", f"Majority-class mIoU on val: {_one(figures['majority_class_miou'])}."]
    rho, interval = dpc.get("spearman"), dpc.get("spearman_interval")
    if rho is not None:
        inside = f" (90% bootstrap interval {interval[0]:.2f} to {interval[1]:.2f})" \
            if interval else ""
        lines.append(f"Spearman ρ, proxy vs fine-tuned, over {dpc['reranked']['n']} cells: "
                     f"{rho:.2f}{inside}.")
    if "proxy_random_median" in dpc:
        lines.append(f"On the proxy: best searched cell {_one(dpc['proxy_best'])}, median of "
                     f"fresh random cells {_one(dpc['proxy_random_median'])}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="Where the data, runs, logs and table.json go.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Training seeds of the searched and the hand-designed networks.")
    parser.add_argument("--random", type=int, default=3,
                        help="Random architectures (Auto-DeepLab) and random cells (DPC).")
    parser.add_argument("--record", default=None,
                        help="Also write the figures as JSON here (e.g. bench/inia19_table.json).")
    parser.add_argument("--table", action="store_true",
                        help="Only print the table from the rows finished so far.")
    parser.add_argument("--only", default=None,
                        help="Run only these rows (comma-separated names), e.g. to redo one.")
    parser.add_argument("--quick", action="store_true",
                        help="Tiny budgets everywhere: checks the whole chain in minutes.")
    parser.add_argument("--finetune", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.random < 0:
        raise TableError("--seeds must be >= 1 and --random >= 0")
    output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    os.makedirs(output_dir, exist_ok=True)
    plan = Plan(output_dir, args.seeds, args.random, args.quick)
    if args.finetune:
        return finetune(plan, args.finetune)
    state_path = plan.path("table.json")
    state = read_json(state_path) if os.path.exists(state_path) else {}
    settings = {"seeds": plan.seeds, "random": plan.random, "quick": plan.quick}
    if state and state.get("settings") != settings:
        raise TableError(f"{state_path}: made with {state.get('settings')}, not {settings}; "
                         f"use another --output_dir")
    state = state or {"settings": settings, "rows": {}}
    if not args.table:
        rows = plan.rows()
        wanted = set(args.only.split(",")) if args.only else None
        for name, command in rows:
            if wanted is not None and name not in wanted:
                continue
            if name in state["rows"] and wanted is None:
                continue
            run_row(plan, name, command, state)
    figures = collect(plan, state)
    costs(plan, figures)
    table = markdown(figures)
    with open(plan.path("table.md"), "w") as f:
        f.write(table + "\n")
    if args.record:
        write_json(args.record, {"settings": settings, "output_dir": output_dir,
                                 "figures": figures, "table": table})
    print(table)


if __name__ == "__main__":
    try:
        main()
    except (TableError, OSError) as error:
        print(f"inia19_table: {error}", file=sys.stderr)
        sys.exit(2)
