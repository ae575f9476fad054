"""Rank statistics, re-ranking and the random baseline of the DPC search."""

import math

import numpy as np
import pytest

from nasseg_tf.search.dpc.rerank import average_ranks, random_baseline, spearman
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
