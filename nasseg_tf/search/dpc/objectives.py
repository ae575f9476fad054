"""Objectives of the DPC search: what scores a candidate cell (a registry).

* ``proxy`` — the paper's proxy task (Chen et al. 2018, §3.3): DPC + logits trained on
  cached backbone features, early-stopped, scored by val mIoU
  (:mod:`nasseg_tf.search.dpc.proxy`, :mod:`nasseg_tf.search.dpc.cache`);
* ``synthetic`` — a cheap deterministic score of the cell's encoding, for tests and dry
  runs of the search machinery.

An objective is ``objective_fn(cell, trial, should_stop) -> dict(miou=..., steps=...,
stopped_early=..., history=[(step, miou), ...])``.
"""

import dataclasses
import math
import os
import time

import numpy as np

from nasseg_tf.search.dpc.cache import ProxyBackboneConfig
from nasseg_tf.search.dpc.proxy import ProxyConfig, run_proxy_trial


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


OBJECTIVES = {"proxy": proxy_objective, "synthetic": synthetic_objective}


def make_objective(name, **context):
    """``objective_fn`` of the registered objective ``name`` (see :data:`OBJECTIVES`).

    ``context``: ``space``, ``project_dir``, ``data`` (a ``DataConfig``), ``cache_dir``,
    and the settings of the objectives: ``proxy`` and ``backbone`` (proxy task),
    ``synthetic``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown DPC search objective {name!r}; known objectives: "
                         f"{', '.join(sorted(OBJECTIVES))} ('synthetic' is a cheap "
                         "deterministic stand-in for tests and dry runs)")
    return OBJECTIVES[name](**context)
