"""bench/inia19_table.py: the rows' order and commands, row bookkeeping (CPU time,
failure naming the log), and the table built from finished runs' files."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "bench_inia19_table", os.path.join(ROOT, "bench", "inia19_table.py"))
table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table)


def _write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def test_rows_run_the_backbone_before_the_dpc_search_and_seeds_last(tmp_path):
    plan = table.Plan(str(tmp_path), seeds=3, random=2)
    names = [name for name, _ in plan.rows()]
    assert names[:2] == ["data", "mnv2_aspp_s0"]
    assert names.index("dpc_search") > names.index("mnv2_aspp_s0")
    assert names.index("adl_searched_s0") > names.index("adl_search")
    assert names.index("adl_random") > names.index("adl_searched_s0")
    assert names[-4:] == ["adl_searched_s1", "mnv2_aspp_s1", "adl_searched_s2",
                          "mnv2_aspp_s2"]
    assert [n for n in names if n.startswith("dpc_random")] == ["dpc_random_0",
                                                                "dpc_random_1"]
    assert len(names) == len(set(names))
    commands = dict(plan.rows())
    dpc = " ".join(commands["dpc_search"])
    assert f"ProxyBackbone.weights = '{plan.backbone}'" in dpc
    assert f"DPCSearch.rerank_init_checkpoint = '{plan.backbone}'" in dpc
    assert "--random_baseline=2" in commands["adl_random"]
    assert f"--retrain_dir={plan.path('adl_searched_s0')}" in commands["adl_random"]
    assert "--gin_bindings=Training.seed = 2" in commands["mnv2_aspp_s2"]
    assert not any("Training.steps" in a for a in commands["mnv2_aspp_s2"])
    quick = dict(table.Plan(str(tmp_path), 1, 1, quick=True).rows())
    assert "--gin_bindings=Training.steps = 6" in quick["mnv2_aspp_s0"]


def test_run_row_records_cpu_time_and_a_failure_names_its_log(tmp_path):
    plan = table.Plan(str(tmp_path), 1, 0)
    state = {"settings": {}, "rows": {}}
    busy = [sys.executable, "-c", "s = 0\nfor i in range(3_000_000): s += i"]
    table.run_row(plan, "busy", busy, state)
    saved = json.load(open(plan.path("table.json")))
    assert saved["rows"]["busy"]["cpu_s"] > 0.05
    assert saved["rows"]["busy"]["wall_s"] >= saved["rows"]["busy"]["cpu_s"] * 0.5
    with pytest.raises(table.TableError, match=r"row bad failed with exit status 3 "
                                               r"\(log: .*bad\.log\)"):
        table.run_row(plan, "bad", [sys.executable, "-c", "raise SystemExit(3)"], state)
    assert "bad" not in json.load(open(plan.path("table.json")))["rows"]


def test_table_from_finished_runs(tmp_path):
    plan = table.Plan(str(tmp_path), seeds=2, random=2)
    _write(os.path.join(plan.data, "dataset.json"),
           {"splits": {"val": {"pixel_counts": [60, 30, 10]}}})
    for name, miou in [("adl_searched_s0", 0.30), ("adl_searched_s1", 0.34),
                       ("mnv2_aspp_s0", 0.25), ("mnv2_aspp_s1", 0.27)]:
        _write(plan.path(name, "eval_results.json"), {"miou": miou})
    _write(plan.path("adl_random", "random_baseline.json"),
           {"entries": [{"miou": 0.2}, {"miou": 0.4}], "summary": {"searched_rank": 2}})
    _write(plan.path("dpc_search", "rerank.json"), {
        "entries": [{"proxy_rank": 1, "proxy_miou": 0.5, "rerank_miou": 0.31,
                     "describe": ["a"]},
                    {"proxy_rank": 4, "proxy_miou": 0.4, "rerank_miou": 0.33,
                     "describe": ["b"]}],
        "best": {"proxy_rank": 4, "rerank_miou": 0.33}, "spearman": -1.0,
        "spearman_interval": [-1.0, -1.0], "settings": {"steps": 3}})
    _write(plan.path("dpc_refs", "published", "eval_results.json"), {"miou": 0.29})
    _write(plan.path("dpc_refs", "random_1", "eval_results.json"), {"miou": 0.28})
    state = {"rows": {"adl_search": {"cpu_s": 7200.0}, "adl_searched_s0": {"cpu_s": 360.0}}}
    figures = table.collect(plan, state)
    assert figures["majority_class_miou"] == pytest.approx(0.6 / 3)
    assert figures["adl"]["searched"]["mean"] == pytest.approx(0.32)
    assert figures["adl"]["searched"]["std"] == pytest.approx(np.std([0.3, 0.34], ddof=1))
    assert figures["adl"]["random"]["values"] == [0.2, 0.4]
    assert figures["adl"]["cpu_h"]["search"] == 2.0
    assert figures["adl"]["cpu_h"]["retrain_each"] == 0.1
    assert figures["dpc"]["proxy_top1"]["miou"] == 0.31
    assert figures["dpc"]["rerank_winner"] == {"proxy_rank": 4, "miou": 0.33}
    assert figures["dpc"]["random_cells"]["n"] == 1  # random_0 not finished
    assert figures["dpc"]["aspp"] is None
    text = table.markdown(figures)
    assert "| searched (cell + path) | 0.320 ± 0.028 (n = 2; 0.300–0.340) | — | search 2.0" in text
    assert "re-rank winner (proxy rank 4) | 0.330" in text
    assert "| ASPP (hand-designed) | — |" in text
    assert "Majority-class mIoU on val: 0.200." in text
    assert "over 2 cells: -1.00 (90% bootstrap interval -1.00 to -1.00)" in text
