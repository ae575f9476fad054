"""The DPC objectives registry: the cost-scored entries (MnasNet's scalarisation)."""

import math

import numpy as np
import pytest

from dpc_helpers import SCORE, SPACE
from nasseg_tf.search.dpc.costs import REFERENCE_CELL
from nasseg_tf.search.dpc.objectives import (COST_SCORED, OBJECTIVES, CostScore,
                                             SyntheticObjectiveConfig, make_objective,
                                             scalarise)
from nasseg_tf.search_space.dpc import load_dpc_cell

# Two cells; their costs and mIoUs are given by hand in each test.
CHEAP, DEAR = SPACE.sample(np.random.default_rng(1)), load_dpc_cell(REFERENCE_CELL)


def _costs(table):
    """A cost_fn from ``{cell key: madds}``."""
    return lambda cell: {"madds": table[cell.key()], "params": 1}


def _constant(mious):
    """An objective_fn giving each cell (by key) a fixed mIoU and a 2-point curve."""
    def objective(cell, trial=None, should_stop=None):
        del trial
        miou = mious[cell.key()]
        history = [(10, miou / 2), (20, miou)]
        stopped = should_stop is not None and should_stop(10, miou / 2)
        kept = history[:1] if stopped else history
        return {"miou": kept[-1][1], "steps": kept[-1][0], "stopped_early": stopped,
                "history": kept}
    return objective


def test_score_formula_on_hand_values():
    soft = CostScore("madds", target=2e9, exponent=-0.07)
    assert soft.score(0.5, 4e9, 2e9) == pytest.approx(0.5 * 2 ** -0.07)  # 0.47632
    assert soft.score(0.5, 1e9, 2e9) == pytest.approx(0.5 * 0.5 ** -0.07)  # 0.52488
    assert soft.score(0.5, 2e9, 2e9) == 0.5
    hard = CostScore("madds", target=2e9, exponent=-1.0, exponent_below=0.0)
    assert hard.score(0.6, 1e9, 2e9) == 0.6  # under the target: the mIoU
    assert hard.score(0.6, 4e9, 2e9) == pytest.approx(0.3)  # above: x target / cost
    assert hard.score(0.6, 3e9, 2e9) == pytest.approx(0.4)


def test_a_cheaper_cell_with_equal_miou_scores_higher():
    assert CHEAP.key() != DEAR.key()
    objective = scalarise(_constant({CHEAP.key(): 0.5, DEAR.key(): 0.5}),
                          _costs({CHEAP.key(): 1e9, DEAR.key(): 3e9}),
                          CostScore("madds", target=2e9))
    cheap, dear = objective(CHEAP), objective(DEAR)
    assert cheap["miou"] == dear["miou"] == 0.5  # the raw mIoU is kept
    assert cheap["score"] > 0.5 > dear["score"]
    assert dear["score"] == pytest.approx(0.5 * 1.5 ** -0.07)
    assert (dear["cost"], dear["cost_target"], dear["score_cost"]) == (3e9, 2e9, "madds")


def test_the_ranking_changes_as_the_target_moves():
    mious = {CHEAP.key(): 0.5, DEAR.key(): 0.6}
    costs = {CHEAP.key(): 2e9, DEAR.key(): 4e9}

    def best(scoring):
        objective = scalarise(_constant(mious), _costs(costs), scoring)
        return max((CHEAP, DEAR), key=lambda cell: objective(cell)["score"])

    hard = dict(exponent=-1.0, exponent_below=0.0)
    assert best(CostScore(target=5e9, **hard)) is DEAR  # both fit: the better mIoU
    assert best(CostScore(target=2e9, **hard)) is CHEAP  # DEAR's 0.6 x 2/4 = 0.3 < 0.5
    # One exponent on both sides (soft): the target scales both scores alike.
    for target in (1e9, 3e9, 1e10):
        assert best(CostScore(target=target, exponent=-0.07)) is DEAR
        assert best(CostScore(target=target, exponent=-0.5)) is CHEAP


def test_the_stopping_rule_and_the_curve_see_scores_the_raw_curve_is_kept():
    seen = []
    objective = scalarise(_constant({DEAR.key(): 0.6}), _costs({DEAR.key(): 4e9}),
                          CostScore(target=2e9, exponent=-1.0))

    def should_stop(step, value):
        seen.append((step, value))
        return False

    result = objective(DEAR, None, should_stop)
    assert seen == [(10, pytest.approx(0.15))]
    assert result["history"] == [(10, pytest.approx(0.15)), (20, pytest.approx(0.3))]
    assert result["miou_history"] == [(10, 0.3), (20, 0.6)]
    assert (result["miou"], result["score"]) == (0.6, pytest.approx(0.3))


def test_the_default_target_is_the_published_cells_cost():
    calls = []

    def costs(cell):
        calls.append(cell.key())
        return {"madds": 3e9 if cell.key() == DEAR.key() else 1.5e9}

    objective = scalarise(_constant({CHEAP.key(): 0.5}), costs, CostScore(exponent=-1.0,
                                                                        exponent_below=0))
    assert objective(CHEAP)["cost_target"] == 3e9
    objective(CHEAP)
    assert calls.count(DEAR.key()) == 1  # resolved once


def test_the_registry_entries_score_the_synthetic_and_proxy_objectives():
    assert set(COST_SCORED) <= set(OBJECTIVES)
    objective = make_objective("synthetic_cost", space=SPACE,
                               synthetic=SyntheticObjectiveConfig(seed=3),
                               cost_fn=_costs({CHEAP.key(): 4e9}),
                               scoring=CostScore(target=1e9, exponent=-0.5))
    result = objective(CHEAP)
    assert result["miou"] == pytest.approx(SCORE(CHEAP))
    assert result["score"] == pytest.approx(SCORE(CHEAP) / 2)
    with pytest.raises(ValueError, match="needs the cells' costs"):
        make_objective("proxy_cost", space=SPACE)


@pytest.mark.parametrize("settings, field", [
    (dict(cost="flops"), "DPCSearch.score_cost: unknown cost 'flops'; known costs: "),
    (dict(target=0), "DPCSearch.cost_target: expected a positive number"),
    (dict(target=-1e9), "DPCSearch.cost_target"),
    (dict(target="3e9"), "DPCSearch.cost_target"),
    (dict(exponent=0.07), "DPCSearch.cost_exponent: expected a finite number <= 0"),
    (dict(exponent=math.nan), "DPCSearch.cost_exponent:"),
    (dict(exponent_below=1), "DPCSearch.cost_exponent_below:"),
    (dict(exponent=None), "DPCSearch.cost_exponent:"),
])
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        CostScore(**settings)


def test_a_cell_without_a_cost_cannot_be_scored():
    with pytest.raises(ValueError, match="whose madds is 0"):
        CostScore(target=1e9).factor(0, 1e9)
