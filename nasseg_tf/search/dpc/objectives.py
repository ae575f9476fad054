"""Objectives of the DPC search: what scores a candidate cell (a registry).

* ``proxy`` — the paper's proxy task (Chen et al. 2018, §3.3): DPC + logits trained on
  cached backbone features, early-stopped, scored by val mIoU
  (:mod:`nasseg_tf.search.dpc.proxy`, :mod:`nasseg_tf.search.dpc.cache`);
* ``synthetic`` — a cheap deterministic score of the cell's encoding, for tests and dry
  runs of the search machinery;
* ``proxy_cost`` and ``synthetic_cost`` — the same mIoU scalarised with the cell's cost
  (:class:`CostScore`: MnasNet's ``mIoU · (cost / target) ^ w``), so that any oracle
  (random, evolution) searches for cells that are both good and cheap.

An objective is ``objective_fn(cell, trial, should_stop) -> dict(miou=..., steps=...,
stopped_early=..., history=[(step, miou), ...])``; a scalarised one adds ``score`` (what
the oracle maximises; ``miou`` stays the raw val mIoU).
"""

import dataclasses
import math
import os
import time

import numpy as np

from nasseg_tf.search.dpc.cache import ProxyBackboneConfig
from nasseg_tf.search.dpc.costs import COSTS, REFERENCE_CELL
from nasseg_tf.search.dpc.proxy import ProxyConfig, run_proxy_trial
from nasseg_tf.search_space.dpc import load_dpc_cell


@dataclasses.dataclass(frozen=True)
class SyntheticObjectiveConfig:
    """Settings of the ``synthetic`` objective (gin ``SyntheticObjective``)."""

    GIN_NAME = "SyntheticObjective"

    seed: int = 0
    steps: int = 100
    eval_every: int = 25
    seconds: float = 0.0


def synthetic_objective(space, synthetic=None, **unused):
    """A cheap deterministic stand-in for the proxy task (tests, dry runs).

    The final "mIoU" of a cell is ``0.2 + 0.6·mean_i((w_op[i, op_i] + ½·w_in[i, in_i])
    / 1.5)`` with fixed uniform random tables ``w`` (seeded), and the validation curve
    rises to it as ``1 - exp(-4·step/steps)`` (normalised), evaluated every
    ``eval_every`` steps; ``should_stop`` is honoured. ``seconds`` of sleep per trial
    make a trial last long enough to test a distributed run. The settings come from a
    :class:`SyntheticObjectiveConfig`.
    """
    del unused
    cfg = synthetic or SyntheticObjectiveConfig()
    seed, steps, eval_every, seconds = cfg.seed, cfg.steps, cfg.eval_every, cfg.seconds
    rng = np.random.default_rng(seed)
    op_table = rng.random((space.num_branches, space.num_ops))
    input_table = rng.random((space.num_branches, space.num_branches + 1))
    evals = list(range(int(eval_every), int(steps) + 1, int(eval_every))) or [int(steps)]
    if evals[-1] != int(steps):
        evals.append(int(steps))

    def score(cell):
        values = space.encode(cell)
        total = sum(op_table[i, values[f"branch{i}_op"]]
                    + 0.5 * input_table[i, values[f"branch{i}_input"] + 1]
                    for i in range(space.num_branches))
        return 0.2 + 0.6 * total / (1.5 * space.num_branches)

    def objective(cell, trial=None, should_stop=None):
        del trial
        final, history, stopped = score(cell), [], False
        for step in evals:
            if seconds:
                time.sleep(seconds / len(evals))
            miou = final * (1 - math.exp(-4 * step / steps)) / (1 - math.exp(-4))
            history.append((step, miou))
            if should_stop is not None and step < steps and should_stop(step, miou):
                stopped = True
                break
        return {"miou": history[-1][1], "steps": history[-1][0], "stopped_early": stopped,
                "history": history}

    objective.score = score
    return objective


def proxy_objective(space, project_dir, data, cache_dir=None, proxy=None, backbone=None,
                    progress=False, **unused):
    """The DPC proxy task (:mod:`nasseg_tf.search.dpc.proxy`): ``proxy`` is the trial
    recipe (:class:`~nasseg_tf.search.dpc.proxy.ProxyConfig`), ``backbone`` the cached
    backbone (:class:`~nasseg_tf.search.dpc.cache.ProxyBackboneConfig`).

    The feature cache (MobileNet-v2 features of the training and validation sets) is
    built or loaded on the first trial of each process (process-safe), so a chief that
    never runs a trial never touches the data.
    """
    del unused, space
    proxy, backbone = proxy or ProxyConfig(), backbone or ProxyBackboneConfig()
    state = {}

    def objective(cell, trial=None, should_stop=None):
        del trial
        if "cache" not in state:
            info, train, val = data.resolve(project_dir)
            if not val:
                raise ValueError("the proxy task needs validation data: set "
                                 "Data.eval_pattern")
            cache = backbone.cache(
                cache_dir or os.path.join(project_dir, "feature_cache"), train, val, info)
            cache.build_or_load()
            state.update(cache=cache)
        return run_proxy_trial(cell, state["cache"], proxy, should_stop=should_stop,
                               progress=progress)

    return objective


@dataclasses.dataclass(frozen=True)
class CostScore:
    """One score from val mIoU and a cost: MnasNet's soft or hard constraint.

    ``score = mIoU · (cost / target) ^ w`` with ``w = exponent`` when ``cost > target``
    and ``w = exponent_below`` when ``cost <= target`` (Tan et al. 2019, "MnasNet:
    Platform-Aware Neural Architecture Search for Mobile", Eq. 2, with mIoU for the
    accuracy and a cost of :data:`~nasseg_tf.search.dpc.costs.COSTS` for the latency).

    * Soft constraint (the default, MnasNet's ``w = -0.07`` on both sides): halving the
      cost is worth ``2^0.07 - 1`` ≈ 5% more mIoU (relative). With one exponent on both
      sides the target only scales every score alike: the *ranking* of two cells does
      not depend on it, only on ``w``.
    * Hard constraint (``exponent_below = 0``, ``exponent = -1``): a cell at or under the
      target scores its mIoU; above it the score falls as ``target / cost``. Here the
      target decides the ranking.

    Settings (gin, ``DPCSearch``): ``cost`` (``DPCSearch.score_cost``: ``madds`` |
    ``params`` | ``latency_ms``, taken at ``DPCCost``'s feature size), ``target``
    (``DPCSearch.cost_target``; None: the cost of the published top-1 cell,
    ``dpc_top1_cityscapes``, on the same basis: 2.99B Multiply-Adds, 356,160 params),
    ``exponent`` (``DPCSearch.cost_exponent``) and ``exponent_below``
    (``DPCSearch.cost_exponent_below``; None: the same as ``exponent``). Exponents are
    at most 0: a dearer cell never scores higher than a cheaper one of equal mIoU.
    """

    cost: str = "madds"
    target: float = None
    exponent: float = -0.07
    exponent_below: float = None

    def __post_init__(self):
        if self.cost not in COSTS:
            raise ValueError(f"DPCSearch.score_cost: unknown cost {self.cost!r}; known "
                             f"costs: {', '.join(COSTS)}")
        if self.target is not None and not _positive(self.target):
            raise ValueError(f"DPCSearch.cost_target: expected a positive number (in "
                             f"{self.cost}) or None, got {self.target!r}")
        for field, value in (("cost_exponent", self.exponent),
                             ("cost_exponent_below", self.exponent_below)):
            if value is None and field == "cost_exponent_below":
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value > 0):
                raise ValueError(f"DPCSearch.{field}: expected a finite number <= 0 (a "
                                 f"dearer cell must not score higher), got {value!r}")

    def resolve_target(self, cost_fn):
        """The target: ``target``, or the published top-1 cell's cost by ``cost_fn``."""
        if self.target is not None:
            return float(self.target)
        return float(cost_fn(load_dpc_cell(REFERENCE_CELL))[self.cost])

    def factor(self, cost, target):
        """``(cost / target) ^ w`` (the class docstring); ``cost`` must be positive."""
        if not _positive(cost):
            raise ValueError(f"cannot score a cell whose {self.cost} is {cost!r}")
        below = self.exponent if self.exponent_below is None else self.exponent_below
        exponent = below if cost <= target else self.exponent
        return (float(cost) / float(target)) ** exponent

    def score(self, miou, cost, target):
        """``miou · factor(cost, target)``."""
        return float(miou) * self.factor(cost, target)


def _positive(value):
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0)


def scalarise(objective, cost_fn, scoring=None):
    """``objective`` (any objective_fn) scored by :class:`CostScore` ``scoring``.

    The cell's cost (``cost_fn(cell)[scoring.cost]``, e.g. a
    :func:`nasseg_tf.search.dpc.costs.cost_fn`) is taken before the trial, so the
    factor is known while it trains: the curve points given to ``should_stop`` (the
    median stopping rule) and the returned ``history`` are scores too (mIoU × the
    cell's factor), and the rule compares cells by what the oracle maximises. The
    result keeps the raw ``miou`` and adds ``score``, ``miou_history`` (the raw curve),
    ``score_cost``, ``cost``, ``cost_target`` and ``cost_factor``. The target is
    resolved once, at the first trial (:meth:`CostScore.resolve_target`).
    """
    scoring = scoring or CostScore()
    state = {}

    def scored(cell, trial=None, should_stop=None):
        if "target" not in state:
            state["target"] = scoring.resolve_target(cost_fn)
        target = state["target"]
        cost = float(cost_fn(cell)[scoring.cost])
        factor = scoring.factor(cost, target)

        def stop(step, miou):  # the rule sees scores
            return should_stop(step, float(miou) * factor)

        result = dict(objective(cell, trial, None if should_stop is None else stop))
        raw = [(int(s), float(m)) for s, m in result.get("history") or ()]
        result.update(score=float(result["miou"]) * factor,
                      history=[(s, m * factor) for s, m in raw], miou_history=raw,
                      score_cost=scoring.cost, cost=cost, cost_target=target,
                      cost_factor=factor)
        return result

    scored.scoring = scoring
    return scored


def _cost_scored(base):
    """A registry entry: ``base``'s objective :func:`scalarise`-d (context ``cost_fn``,
    the cell's costs, and ``scoring``, a :class:`CostScore`)."""

    def make(cost_fn=None, scoring=None, **context):
        if cost_fn is None:
            raise ValueError("a cost-scored DPC objective needs the cells' costs "
                             "(cost_fn)")
        return scalarise(base(**context), cost_fn, scoring)

    make.__doc__ = (f"{base.__name__}, scalarised with the cell's cost "
                    f"(:func:`scalarise`).")
    return make


OBJECTIVES = {"proxy": proxy_objective, "synthetic": synthetic_objective,
              "proxy_cost": _cost_scored(proxy_objective),
              "synthetic_cost": _cost_scored(synthetic_objective)}
#: The registry entries that score by mIoU and cost (they take ``cost_fn``, ``scoring``).
COST_SCORED = ("proxy_cost", "synthetic_cost")


def make_objective(name, **context):
    """``objective_fn`` of the registered objective ``name`` (see :data:`OBJECTIVES`).

    ``context``: ``space``, ``project_dir``, ``data`` (a ``DataConfig``), ``cache_dir``,
    and the settings of the objectives: ``proxy`` and ``backbone`` (proxy task),
    ``synthetic``; ``cost_fn`` and ``scoring`` (a :class:`CostScore`) for the
    :data:`COST_SCORED` ones.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown DPC search objective {name!r}; known objectives: "
                         f"{', '.join(sorted(OBJECTIVES))} ('synthetic' is a cheap "
                         "deterministic stand-in for tests and dry runs)")
    return OBJECTIVES[name](**context)
