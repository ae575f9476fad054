"""Costs of DPC cells: counted Multiply-Adds and params, cached CPU latency, the front."""

import json
import os

import numpy as np
import pytest

from nasseg_tf.fileio import TEMP_MARKER
from nasseg_tf.search.dpc import costs
from nasseg_tf.search.dpc.costs import (CellCostConfig, LatencyCache, cost_fn, count_cost,
                                        pareto_front, reference_costs)
from nasseg_tf.search_space.dpc import DPCSearchSpace

TINY = CellCostConfig(feature_size=(9, 11), channels=8, filters=8, latency_runs=3,
                      latency_warmup=1)
CELL = "dpc_top1_cityscapes"


def test_top1_cell_and_aspp_cost_dpc_table_1_at_the_default_size():
    # SPEC §3.4: MobileNet-v2 (320 ch) at 65x129 positions: DPC 0.36M params, 3.00B
    # Multiply-Adds (356,160 x 8,385 = 2.99B); ASPP 2.82B.
    refs = reference_costs()
    assert refs[CELL]["params"] == 356_160
    assert refs[CELL]["madds"] == 356_160 * 65 * 129
    assert abs(refs["aspp"]["madds"] / 2.82e9 - 1) < 0.01
    assert count_cost(CELL) == refs[CELL]


def test_cost_scales_with_the_feature_size_parameter():
    small = count_cost(CELL, CellCostConfig(feature_size=(33, 33)))
    assert small["params"] == 356_160 and small["madds"] == 356_160 * 33 * 33


def _brute_force_front(points):
    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a != b
    return {i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)}


def test_pareto_front_equals_brute_force():
    # (mIoU, cost) by hand: C dominates D (same cost, better), E ties A (both stay),
    # F is dominated by B (cheaper, as good).
    points = [(0.5, 1.0), (0.7, 2.0), (0.8, 3.0), (0.6, 3.0), (0.5, 1.0), (0.7, 2.5),
              (0.4, 0.5)]
    front = pareto_front(points)
    assert front == [6, 0, 4, 1, 2]  # cheapest first
    assert set(front) == _brute_force_front(points)
    rng = np.random.default_rng(0)
    for _ in range(200):  # with many ties: values from a small grid
        grid = rng.integers(0, 5, (rng.integers(1, 15), 2))
        points = [tuple(map(float, p)) for p in grid]
        front = pareto_front(points)
        assert set(front) == _brute_force_front(points)
        assert [points[i][1] for i in front] == sorted(points[i][1] for i in front)
    assert pareto_front([]) == []


def test_latency_is_measured_once_per_cell_host_and_thread_count(tmp_path, monkeypatch):
    path = str(tmp_path / "latency_cache.json")
    calls = []

    def measure(cell, cfg):
        calls.append(cell.key())
        return costs.measure_latency_ms(cell, cfg)  # the real timing, tiny size

    first = LatencyCache(path, TINY, measure).latency_ms(CELL)
    assert first > 0 and len(calls) == 1
    # A rerun (a new cache object, as after a restart) reuses the file.
    assert LatencyCache(path, TINY, measure).latency_ms(CELL) == first
    assert len(calls) == 1
    other = DPCSearchSpace().sample(np.random.default_rng(1))
    LatencyCache(path, TINY, measure).latency_ms(other)
    assert len(calls) == 2
    monkeypatch.setattr(costs, "thread_count", lambda: 97)
    LatencyCache(path, TINY, measure).latency_ms(CELL)
    assert len(calls) == 3
    monkeypatch.setattr(costs.socket, "gethostname", lambda: "elsewhere")
    LatencyCache(path, TINY, measure).latency_ms(CELL)
    assert len(calls) == 4
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)["entries"]
    assert len(entries) == 4
    assert {(e["host"], e["threads"]) for e in entries.values()} >= {("elsewhere", 97)}
    assert not [f for f in os.listdir(tmp_path) if TEMP_MARKER in f]  # atomic writes


def test_a_corrupt_latency_cache_names_the_file(tmp_path):
    path = tmp_path / "latency_cache.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="latency_cache.json: not a latency cache"):
        LatencyCache(str(path), TINY, lambda cell, cfg: 1.0).latency_ms(CELL)


def test_cost_fn_reports_the_asked_costs_and_rejects_unknown_ones(tmp_path):
    fn = cost_fn(("madds", "latency_ms"), TINY, str(tmp_path / "lat.json"))
    out = fn(CELL)
    assert set(out) == {"madds", "latency_ms"} and out["latency_ms"] > 0
    assert out["madds"] == count_cost(CELL, TINY)["madds"]
    with pytest.raises(ValueError, match="known costs: madds, params, latency_ms"):
        cost_fn(("flops",))
    with pytest.raises(ValueError, match="DPCCost.feature_size"):
        CellCostConfig(feature_size=(0, 3))

