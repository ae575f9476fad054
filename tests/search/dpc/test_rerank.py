"""Rank statistics, re-ranking and the random baseline of the DPC search."""

import math

import numpy as np
import pytest

import itertools

from nasseg_tf.search.dpc.rerank import (average_ranks, random_baseline, select_rows,
                                         short_run_bn_momentum, spearman,
                                         spearman_bootstrap)
from nasseg_tf.search_space.dpc import DPCSearchSpace



def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


def test_spearman_hand_example_with_ties():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5) = 3/sqrt(10)
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(
        3 / math.sqrt(10))
    assert spearman([1, 2, 3], [9, 5, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    x = np.random.default_rng(0).permutation(20)
    y = np.random.default_rng(1).permutation(20)
    d2 = np.sum((x - y) ** 2.0)  # no ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (20 * (20 ** 2 - 1)))


def _exact_bootstrap(x, y):
    """Every one of the n**n equally likely resamples: the defined rho values."""
    x, y, n = np.asarray(x), np.asarray(y), len(x)
    values = []
    for index in itertools.product(range(n), repeat=n):
        rho = spearman(x[list(index)], y[list(index)])
        if not math.isnan(rho):
            values.append(rho)
    return np.sort(values)


def test_spearman_bootstrap_interval_equals_brute_force():
    x, y = [0.1, 0.4, 0.2, 0.3], [1.0, 3.0, 4.0, 2.0]  # rho = 0.4
    exact = _exact_bootstrap(x, y)
    atoms, counts = np.unique(np.round(exact, 12), return_counts=True)
    cdf = np.cumsum(counts) / len(exact)
    # The exact 5% and 95% quantiles: the atoms where the CDF crosses the levels, far
    # enough from any jump that 5000 draws cannot land on the neighbouring atom.
    low = atoms[np.searchsorted(cdf, 0.05)]
    high = atoms[np.searchsorted(cdf, 0.95)]
    assert min(abs(cdf - 0.05).min(), abs(cdf - 0.95).min()) > 0.01
    got = spearman_bootstrap(x, y, draws=5000, level=0.9, seed=3)
    assert got == pytest.approx((low, high), abs=1e-9)
    assert low < spearman(x, y) < high
    assert spearman_bootstrap(x, y, draws=500, seed=1) == spearman_bootstrap(
        x, y, draws=500, seed=1)


def test_spearman_bootstrap_of_a_monotone_relation_is_one():
    assert spearman_bootstrap([1, 2, 3, 4, 5], [2, 4, 8, 16, 32], draws=300) == (1.0, 1.0)
    assert all(math.isnan(v) for v in spearman_bootstrap([1, 1], [1, 2], draws=50))
    with pytest.raises(ValueError, match="level"):
        spearman_bootstrap([1, 2], [1, 2], level=1.5)


def test_select_rows_spreads_over_the_ranking():
    rows = [{"rank": i + 1} for i in range(12)]
    assert [r["rank"] for r in select_rows(rows, 8)] == [1, 3, 4, 6, 7, 9, 10, 12]
    assert [r["rank"] for r in select_rows(rows, 3, spread=False)] == [1, 2, 3]
    assert [r["rank"] for r in select_rows(rows, 20)] == list(range(1, 13))
    assert [r["rank"] for r in select_rows(rows, 1)] == [1]


def test_short_runs_get_fast_batch_norm_averages():
    assert short_run_bn_momentum(20) == pytest.approx(0.5)
    assert short_run_bn_momentum(10 ** 6) == 0.9997  # DeepLab's at long budgets


def test_random_baseline_scores_fresh_cells_once_and_resumes(tmp_path):
    space = DPCSearchSpace(num_branches=2)
    searched = [space.sample(np.random.default_rng(i)) for i in range(3)]
    rows = [{"cell": c.to_config(), "val_miou": 0.5 - 0.1 * i}
            for i, c in enumerate(searched)]
    calls = []

    def objective(cell, trial, should_stop):
        assert trial is None and should_stop is None  # full budget, no early stopping
        calls.append(cell)
        return {"miou": 0.1 * len(calls), "steps": 7}

    out = random_baseline(rows, space, objective, str(tmp_path), 4, seed=1, verbose=False)
    assert len(calls) == 4 and len({c.key() for c in calls}) == 4
    assert not {c.key() for c in calls} & {c.key() for c in searched}
    assert out["median_random_miou"] == pytest.approx(0.25)
    assert out["best_searched_miou"] == 0.5 and out["best_beats_median"]
    again = random_baseline(rows, space, objective, str(tmp_path), 4, seed=1, verbose=False)
    assert len(calls) == 4 and again == out  # resumed from random_baseline.json
    assert out["ranked_by"] == "val_miou" and out["median_random"] == pytest.approx(0.25)


def test_random_baseline_of_a_cost_scored_search_compares_scores(tmp_path):
    space = DPCSearchSpace(num_branches=2)
    searched = [space.sample(np.random.default_rng(i)) for i in range(2)]
    # The best-scored searched cell is cheap with a low mIoU: it ranks first by score
    # although a random cell's raw mIoU is higher.
    rows = [{"cell": searched[0].to_config(), "val_miou": 0.2, "score": 0.4},
            {"cell": searched[1].to_config(), "val_miou": 0.6, "score": 0.3}]
    scores = iter([(0.5, 0.25), (0.7, 0.35), (0.3, 0.2)])

    def objective(cell, trial, should_stop):
        miou, score = next(scores)
        return {"miou": miou, "score": score, "steps": 7}

    out = random_baseline(rows, space, objective, str(tmp_path), 3, seed=1, verbose=False,
                          ranked_by="score")
    assert out["median_random"] == pytest.approx(0.25) and out["best_searched"] == 0.4
    assert out["best_beats_median"]  # on the score: 0.4 > 0.25
    assert out["median_random_miou"] == pytest.approx(0.5)  # raw: kept, not compared
    assert out["best_searched_miou"] == 0.2
    assert [e["score"] for e in out["entries"]] == [0.25, 0.35, 0.2]
    with pytest.raises(ValueError, match="returned no 'score'"):
        random_baseline(rows, space, lambda cell, t, s: {"miou": 0.5}, str(tmp_path / "x"),
                        1, seed=2, verbose=False, ranked_by="score")
