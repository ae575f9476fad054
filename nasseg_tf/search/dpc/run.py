"""The DPC architecture search, end to end (Chen et al. 2018, §3.3; SPEC §3.3).

Chen et al. score each candidate Dense Prediction Cell on a proxy task — DPC + logits
trained on cached backbone features, early-stopped, scored by val mIoU — sample the
next candidates uniformly and near the best so far, then re-rank the best 50 by
fine-tuning whole models. :func:`run_search` (the body of ``nasseg-search-dpc``) wires
the pieces together:

* the space (:class:`~nasseg_tf.search_space.dpc.DPCSearchSpace`) and an oracle
  (:mod:`~nasseg_tf.search.dpc.oracles`: random search with mutations, or evolution);
* an objective (:mod:`~nasseg_tf.search.dpc.objectives`: the proxy task, or synthetic);
* the tuner and its chief / worker roles (:mod:`~nasseg_tf.search.dpc.tuner`);
* the leaderboard and pictures (:mod:`~nasseg_tf.search.dpc.leaderboard`);
* the random baseline and re-ranking (:mod:`~nasseg_tf.search.dpc.rerank`).
"""

import dataclasses
import os

from nasseg_tf import fileio, runfiles
from nasseg_tf.data.inputs import DataConfig
from nasseg_tf.search.dpc import plots
from nasseg_tf.search.dpc.cache import ProxyBackboneConfig
from nasseg_tf.search.dpc.costs import CellCostConfig, reference_costs
from nasseg_tf.search.dpc.costs import cost_fn as costs_fn
from nasseg_tf.search.dpc.leaderboard import PROGRESS_PNG, write_leaderboard
from nasseg_tf.search.dpc.objectives import (COST_SCORED, OBJECTIVES, CostScore,
                                             SyntheticObjectiveConfig, make_objective)
from nasseg_tf.search.dpc.oracles import OBJECTIVE, SCORE, make_oracle
from nasseg_tf.search.dpc.proxy import ProxyConfig
from nasseg_tf.search.dpc.rerank import (finetune_rerank_fn, random_baseline, rerank,
                                         train_backbone)
from nasseg_tf.search.dpc.tuner import DPCTuner, role
from nasseg_tf.search_space.dpc import SEARCH_GRIDS, SEARCH_RATES, DPCSearchSpace


@dataclasses.dataclass(frozen=True)
class DPCSearchConfig:
    """The DPC search (gin ``DPCSearch``, ``nasseg-search-dpc``); defaults follow the
    paper where it says.

    Oracle: ``oracle`` (``random`` | ``evolution`` | ``pareto``), ``max_trials``,
    ``seed``; ``explore`` and ``top_k`` (random search: uniform-sample probability, pool
    of parents), ``population_size`` and ``sample_size`` (evolution), ``pareto_cost``
    (the Pareto oracle: the front of val mIoU and this cost, ``madds`` | ``params`` |
    ``latency_ms``, is its pool of parents). Costs: ``costs`` measured for every trial
    (:mod:`~nasseg_tf.search.dpc.costs`, at ``DPCCost``'s feature size; the Pareto cost
    is always added), ``latency_cache`` (default ``<project_dir>/latency_cache.json``).
    Space:
    ``num_branches``, ``rates``, ``grids``. Objective: ``objective`` (``proxy`` |
    ``synthetic``, or ``proxy_cost`` | ``synthetic_cost``: the mIoU scalarised with a
    cost, ``mIoU · (cost / cost_target) ^ w``, :class:`~nasseg_tf.search.dpc.objectives.
    CostScore`: ``score_cost`` names the cost, ``cost_target`` the target (None: the
    published top-1 cell's cost), ``cost_exponent`` is ``w`` above the target and
    ``cost_exponent_below`` under it, None = the same: soft; 0 = hard), the median
    stopping rule (``early_stopping``,
    ``early_stopping_min_trials``), ``cache_dir`` (proxy features; default
    ``<project_dir>/feature_cache``). Outputs: ``save_top_k`` cells, leaderboard
    rewrite interval. Re-ranking (0 = off; the paper: 50): ``rerank_top_k``,
    ``rerank_steps``, ``rerank_batch_size``, ``rerank_crop_size``,
    ``rerank_learning_rate``, ``rerank_model`` (a zoo name taking ``dpc_cell``) and
    ``rerank_model_overrides``, ``rerank_eval_images``; ``rerank_spread``: re-rank
    cells spread evenly over the proxy ranking instead of the best ``rerank_top_k``
    (Spearman ρ over the top few says little); ``rerank_init_checkpoint``: the weights
    a re-ranked model starts from (default: the trained proxy backbone, when
    ``backbone_steps > 0``). Backbone stage (the paper's proxy backbone is trained on
    the task first): ``backbone_steps > 0`` trains ``backbone_model`` (MobileNet-v2 +
    ASPP at ``ProxyBackbone``'s depth multiplier and output stride, plus
    ``backbone_model_overrides``) with ``backbone_batch_size``, ``backbone_crop_size``,
    ``backbone_learning_rate`` into ``<model_dir>/backbone`` (resumes) before the
    search, and the feature cache uses it (``ProxyBackbone.weights``; 0 = off: the
    backbone is ``ProxyBackbone.weights`` or a random init). ``random_baseline``: after
    the search, score this many fresh random cells with the full budget and compare
    their median with the best searched cell
    (:func:`~nasseg_tf.search.dpc.rerank.random_baseline`; 0 = off).
    """

    GIN_NAME = "DPCSearch"

    oracle: str = "random"
    max_trials: int = 100
    seed: int = 0
    explore: float = 0.5
    top_k: int = 10
    population_size: int = 50
    sample_size: int = 10
    pareto_cost: str = "madds"
    costs: tuple = ("madds", "params")
    latency_cache: str = None
    num_branches: int = 5
    rates: tuple = SEARCH_RATES
    grids: tuple = SEARCH_GRIDS
    objective: str = "proxy"
    score_cost: str = "madds"
    cost_target: float = None
    cost_exponent: float = -0.07
    cost_exponent_below: float = None
    early_stopping: bool = True
    early_stopping_min_trials: int = 5
    max_retries_per_trial: int = 0
    max_consecutive_failed_trials: int = 3
    cache_dir: str = None
    save_top_k: int = 10
    leaderboard_every_s: float = 10.0
    rerank_top_k: int = 0
    rerank_steps: int = 1000
    rerank_batch_size: int = 8
    rerank_crop_size: tuple = (513, 513)
    rerank_learning_rate: float = 0.01
    rerank_model: str = "mobilenetv2_dpc"
    rerank_model_overrides: dict = None
    rerank_eval_images: int = None
    rerank_spread: bool = False
    rerank_init_checkpoint: str = None
    backbone_steps: int = 0
    backbone_batch_size: int = 8
    backbone_crop_size: tuple = (513, 513)
    backbone_learning_rate: float = 0.01
    backbone_model: str = "mobilenetv2_aspp"
    backbone_model_overrides: dict = None
    random_baseline: int = 0
    verbose: bool = True

    def rerank_settings(self):
        return {"steps": self.rerank_steps, "batch_size": self.rerank_batch_size,
                "crop_size": list(self.rerank_crop_size),
                "learning_rate": self.rerank_learning_rate, "model": self.rerank_model,
                "model_overrides": dict(self.rerank_model_overrides or {}),
                "eval_images": self.rerank_eval_images, "spread": self.rerank_spread,
                "init_checkpoint": self.rerank_init_checkpoint,
                "backbone_steps": self.backbone_steps}

    def backbone_overrides(self, backbone):
        """The backbone model's zoo overrides: ``ProxyBackbone``'s depth multiplier
        and output stride, then ``backbone_model_overrides``."""
        return {"depth_multiplier": backbone.depth_multiplier,
                "output_stride": backbone.output_stride,
                **dict(self.backbone_model_overrides or {})}


def _last_cell_memo(fn):
    """``fn(cell)``, remembering the last cell's answer (a trial asks twice)."""
    last = {}

    def memo(cell):
        key = cell.key()
        if key not in last:
            last.clear()
            last[key] = fn(cell)
        return dict(last[key])

    return memo


def run_search(model_dir, search=None, data=None, proxy=None, backbone=None,
               synthetic=None, argv=None, objective_fn=None, rerank_fn=None, cost=None):
    """Runs the DPC search in ``model_dir`` (resumes a previous one).

    As a worker: runs trials until the chief says stop. As the chief or alone: also
    writes the leaderboard with its pictures and TensorBoard summaries, the random
    baseline (``random_baseline > 0``; the progress picture is then drawn again with
    the random median) and (``rerank_top_k > 0``) re-ranks.

    Args:
      model_dir: the search's folder (KerasTuner's project folder).
      search, data, proxy, backbone, synthetic: :class:`DPCSearchConfig`,
        :class:`~nasseg_tf.data.inputs.DataConfig`,
        :class:`~nasseg_tf.search.dpc.proxy.ProxyConfig`,
        :class:`~nasseg_tf.search.dpc.cache.ProxyBackboneConfig` and
        :class:`~nasseg_tf.search.dpc.objectives.SyntheticObjectiveConfig` (defaults:
        their defaults).
      cost: :class:`~nasseg_tf.search.dpc.costs.CellCostConfig` (where costs are
        taken; default: DPC Table 1's basis).
      argv: the command line to save (default ``sys.argv``).
      objective_fn: overrides the configured objective (tests, custom proxies).
      rerank_fn: overrides the default whole-model fine-tuning.

    Returns:
      dict with ``role`` and, on the chief / alone, ``leaderboard`` (rows), ``rerank``
      (the rerank summary or None), ``oracle`` and ``baseline``.
    """
    cfg, data = search or DPCSearchConfig(), data or DataConfig()
    proxy, backbone = proxy or ProxyConfig(), backbone or ProxyBackboneConfig()
    synthetic = synthetic or SyntheticObjectiveConfig()
    cost = cost or CellCostConfig()
    this_role = role()
    if objective_fn is None and cfg.objective not in OBJECTIVES:
        make_objective(cfg.objective)  # raises the error listing the known objectives
    scored = objective_fn is None and cfg.objective in COST_SCORED
    scoring = CostScore(cfg.score_cost, cfg.cost_target, cfg.cost_exponent,
                        cfg.cost_exponent_below)  # checks the settings
    if scored and cfg.oracle == "pareto":
        raise ValueError(f"DPCSearch.objective = {cfg.objective!r} scores mIoU and cost "
                         f"as one number: use it with the random or evolution oracle "
                         f"(the 'pareto' oracle keeps the front of mIoU and cost itself)")
    space = DPCSearchSpace(cfg.num_branches, cfg.rates, cfg.grids)
    oracle = make_oracle(
        cfg.oracle, space,
        options={"explore": cfg.explore, "top_k": cfg.top_k,
                 "population_size": cfg.population_size, "sample_size": cfg.sample_size,
                 "pareto_cost": cfg.pareto_cost},
        max_trials=cfg.max_trials, seed=cfg.seed, early_stopping=cfg.early_stopping,
        early_stopping_min_trials=cfg.early_stopping_min_trials,
        max_retries_per_trial=cfg.max_retries_per_trial,
        max_consecutive_failed_trials=cfg.max_consecutive_failed_trials,
        objective=SCORE if scored else OBJECTIVE)
    names = (tuple(cfg.costs) + ((cfg.pareto_cost,) if cfg.oracle == "pareto" else ())
             + ((cfg.score_cost,) if scored else ()))
    costs = costs_fn(tuple(dict.fromkeys(names)), cost, cfg.latency_cache or os.path.join(
        fileio.abspath(model_dir), "latency_cache.json")) if names else None
    if scored:  # the objective takes the costs first; the tuner reuses them
        costs = _last_cell_memo(costs)
    if this_role != "worker":  # a refused resume must not touch the project's files
        oracle.check_project(fileio.abspath(model_dir))
    fileio.makedirs(model_dir)
    if this_role != "worker":
        runfiles.write_run_files(model_dir, [cfg, data.absolute(), proxy, backbone,
                                             synthetic, cost], argv)
    backbone_dir = None
    if cfg.backbone_steps > 0:
        backbone_dir = os.path.join(fileio.abspath(model_dir), "backbone")
        if this_role != "worker":  # workers read the chief's (start them after it)
            info, train, _ = data.resolve(model_dir)
            if cfg.verbose:
                print(f"[backbone] training {cfg.backbone_model} on the task for "
                      f"{cfg.backbone_steps} steps in {backbone_dir} ...", flush=True)
            train_backbone(info, train, backbone_dir, cfg.backbone_steps,
                           cfg.backbone_batch_size, cfg.backbone_crop_size,
                           cfg.backbone_learning_rate, cfg.backbone_model,
                           cfg.backbone_overrides(backbone), cfg.seed)
        # The zoo's models pad strided convs as TensorFlow does: cache the same.
        backbone = dataclasses.replace(backbone, weights=backbone_dir,
                                       explicit_padding=False)
    if objective_fn is None:
        objective_fn = make_objective(cfg.objective, space=space, project_dir=model_dir,
                                      data=data, cache_dir=cfg.cache_dir, proxy=proxy,
                                      backbone=backbone, synthetic=synthetic,
                                      cost_fn=costs, scoring=scoring)
    tuner = DPCTuner(oracle, objective_fn, model_dir, verbose=cfg.verbose,
                     leaderboard_every_s=cfg.leaderboard_every_s,
                     save_top_k=cfg.save_top_k, cost_fn=costs)
    tuner.search()
    if this_role == "worker":
        return {"role": this_role}

    rows = write_leaderboard(oracle, model_dir, cfg.save_top_k, final=True,
                             references=reference_costs(cost) if names else None)
    baseline = None
    if cfg.random_baseline > 0:
        baseline = random_baseline(rows, space, objective_fn, model_dir,
                                   cfg.random_baseline, cfg.seed, cfg.verbose,
                                   ranked_by=oracle.objective.name)
        plots.plot_dpc_search(rows, os.path.join(model_dir, PROGRESS_PNG),
                              baseline)  # again, with the random median
    summary = None
    if cfg.rerank_top_k > 0 and rows:
        if rerank_fn is None:
            info, train, val = data.resolve(model_dir)
            if not val:
                raise ValueError("re-ranking needs validation data: set Data.eval_pattern "
                                 "(or DPCSearch.rerank_top_k = 0)")
            rerank_fn = finetune_rerank_fn(
                info, train, val, cfg.rerank_steps, cfg.rerank_batch_size,
                cfg.rerank_crop_size, cfg.rerank_learning_rate, cfg.rerank_model,
                cfg.rerank_model_overrides, cfg.rerank_eval_images, cfg.seed,
                init_checkpoint=cfg.rerank_init_checkpoint or backbone_dir)
        summary = rerank(rows, rerank_fn, model_dir, cfg.rerank_top_k,
                         settings=cfg.rerank_settings(), verbose=cfg.verbose,
                         spread=cfg.rerank_spread, bootstrap_seed=cfg.seed)
    return {"role": this_role, "leaderboard": rows, "rerank": summary, "oracle": oracle,
            "baseline": baseline}
