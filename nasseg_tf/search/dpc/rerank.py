"""Does the DPC proxy rank cells as the real task does? Re-ranking and baselines.

Chen et al. 2018 (§3.3) re-rank the proxy's best 50 cells by fine-tuning whole models
(the winner was 12th on the proxy; proxy-to-real Spearman ρ ≈ 0.36–0.47). This module
holds that re-ranking (:func:`rerank` with the default whole-model fine-tuning of
:func:`finetune_rerank_fn`), the rank statistics it reports (:func:`spearman`) and
:func:`random_baseline`: fresh uniformly random cells scored with the full proxy budget,
to say whether the search beats chance.
"""

import json
import math
import os
import time

import numpy as np

from nasseg_tf.data import build_dataset
from nasseg_tf.data.inputs import train_input_fn
from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_json
from nasseg_tf.models import zoo
from nasseg_tf.search.dpc.oracles import OBJECTIVE, RANKED_METRICS, SCORE
from nasseg_tf.search_space.dpc import DPCCell
from nasseg_tf.train import evaluation, strategies
from nasseg_tf.train.experiment import TrainConfig
from nasseg_tf.train.loop import TrainLoop
from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate
from nasseg_tf.train.warm_start import warm_start


# --------------------------------------------------------------------------------------
# Rank statistics.


def average_ranks(values):
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # ranks before each distinct value
    return (first + (counts + 1) / 2.0)[inverse.reshape(-1)]


def spearman(x, y):
    """Spearman's rank correlation ρ: Pearson correlation of the average ranks.

    Returns NaN for fewer than two pairs or when one side is constant.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman: need two 1-D sequences of equal length, got shapes "
                         f"{x.shape} and {y.shape}")
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(np.sum(rx * rx) * np.sum(ry * ry)))
    return float(np.sum(rx * ry) / denom) if denom > 0 else math.nan


def spearman_bootstrap(x, y, draws=2000, level=0.9, seed=0):
    """Percentile bootstrap interval of Spearman's ρ over the pairs (the cells).

    ``draws`` resamples of the ``n`` pairs with replacement (seeded); resamples on
    which ρ is undefined (one side constant) are left out. Returns ``(low, high)``,
    the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the defined ρ values
    (numpy's default linear interpolation), or ``(nan, nan)`` when none is defined.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman_bootstrap: need two 1-D sequences of equal length, "
                         f"got shapes {x.shape} and {y.shape}")
    if not 0 < level < 1:
        raise ValueError(f"spearman_bootstrap: level must lie in (0, 1), got {level}")
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng([int(seed), 7_919])
    values = []
    for _ in range(int(draws)):
        i = rng.integers(0, n, n)
        rho = spearman(x[i], y[i])
        if not math.isnan(rho):
            values.append(rho)
    if not values:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------
# Re-ranking.


def select_rows(rows, count, spread=True):
    """The leaderboard rows to re-rank: the best ``count`` or (``spread``) ``count``
    rows at evenly spaced proxy ranks from the best to the worst (ρ over the top few
    alone would say little about the proxy)."""
    count = min(int(count), len(rows))
    if not spread or count < 2:
        return list(rows[:count])
    last = len(rows) - 1
    picks = sorted({int(round(i * last / (count - 1))) for i in range(count)})
    return [rows[i] for i in picks]


def rerank(rows, rerank_fn, project_dir, top_k, settings=None, verbose=True,
           spread=False, bootstrap_seed=0):
    """Re-ranks ``top_k`` leaderboard rows with ``rerank_fn`` (whole-model
    fine-tuning, Chen et al. 2018 §3.3: the proxy's top 50): the best ``top_k``, or
    with ``spread`` ``top_k`` rows spread evenly over the proxy ranking
    (:func:`select_rows`).

    ``rerank_fn(cell, work_dir) -> dict(miou=...)``. Results go to
    ``<project_dir>/rerank.json`` after each model (a rerun with the same ``settings``
    skips the cells already done): every entry's proxy and re-ranked score and rank,
    and the Spearman ρ between proxy and re-ranked scores with its 90% percentile
    bootstrap interval (``spearman_interval``, :func:`spearman_bootstrap` seeded with
    ``bootstrap_seed``). The winner is also written to ``rerank_best_cell.json``.
    """
    path = os.path.join(project_dir, "rerank.json")
    settings = dict(settings or {})
    done = {}
    if fileio.exists(path):
        previous = fileio.read_json(path)
        if previous.get("settings") == settings:
            done = {(e["trial_id"], json.dumps(e["cell"])): e for e in previous["entries"]}
    entries = []

    def write(final):
        scores = [(e["proxy_miou"], e["rerank_miou"]) for e in entries]
        rho = spearman(*zip(*scores)) if len(scores) >= 2 else math.nan
        interval = (spearman_bootstrap(*zip(*scores), seed=bootstrap_seed)
                    if final and len(scores) >= 2 else (math.nan, math.nan))
        order = sorted(range(len(entries)),
                       key=lambda i: (-entries[i]["rerank_miou"], entries[i]["proxy_rank"]))
        for position, i in enumerate(order, 1):
            entries[i]["rerank_rank"] = position
        summary = {"settings": settings, "top_k": top_k, "spread": bool(spread),
                   "complete": final, "spearman": None if math.isnan(rho) else rho,
                   "spearman_interval": (None if math.isnan(interval[0])
                                         else [interval[0], interval[1]]),
                   "spearman_level": 0.9, "entries": entries,
                   "best": entries[order[0]] if entries else None}
        atomic_write_json(path, summary, indent=2)
        return summary

    summary = write(False)
    chosen = select_rows(rows, top_k, spread)
    for row in chosen:
        key = (row["trial_id"], json.dumps(row["cell"]))
        if key in done:
            entries.append(done[key])
            continue
        cell = DPCCell.from_config(row["cell"], f"trial_{row['trial_id']}")
        work_dir = os.path.join(project_dir, "rerank", f"trial_{row['trial_id']}")
        fileio.makedirs(work_dir)
        cell.save(os.path.join(work_dir, "cell.json"))
        start = time.time()
        result = rerank_fn(cell, work_dir)
        entries.append({"proxy_rank": row["rank"], "trial_id": row["trial_id"],
                        "proxy_miou": row["val_miou"],
                        "rerank_miou": float(result["miou"]),
                        "seconds": round(time.time() - start, 3), "cell": row["cell"],
                        "describe": row["describe"]})
        if verbose:
            print(f"[rerank] {len(entries)}/{len(chosen)}: trial "
                  f"{row['trial_id']} proxy {row['val_miou']:.4f} -> fine-tuned "
                  f"{entries[-1]['rerank_miou']:.4f}", flush=True)
        summary = write(False)
    summary = write(True)
    if summary["best"] is not None:
        DPCCell.from_config(summary["best"]["cell"]).save(
            os.path.join(project_dir, "rerank_best_cell.json"))
    return summary


def build_rerank_model(cell, num_classes, model_name="mobilenetv2_dpc", overrides=None):
    """The whole DPC segmentation model for ``cell``: zoo entry ``model_name`` with
    ``dpc_cell=cell`` and ``overrides`` (the zoo names unknown models and overrides)."""
    return zoo.build(model_name, num_classes=num_classes, dpc_cell=cell.to_config(),
                     **dict(overrides or {}))


def short_run_bn_momentum(steps):
    """BN moving-average momentum for a run of ``steps`` steps: ``min(0.9997,
    1 − 10/steps)``, as the proxy's (with DeepLab's 0.9997 a 40-step run leaves the
    moving statistics at ~99% of their initial values, and evaluation, which uses
    them, sees features scaled by a random init's statistics: constant predictions)."""
    return min(0.9997, max(0.0, 1.0 - 10.0 / max(int(steps), 1)))


def train_whole_model(model_fn, info, train_pattern, work_dir, steps, batch_size,
                      crop_size, learning_rate, seed=0, init_checkpoint=None,
                      init_exclude=()):
    """Trains ``model_fn()`` with the one training loop (poly LR from
    ``learning_rate``, DeepLab's recipe otherwise; ``Training``'s input settings)
    into ``work_dir`` (checkpoints: a rerun resumes; the last step is saved).
    ``init_checkpoint`` warm-starts the model (:func:`~nasseg_tf.train.warm_start.
    warm_start`, ``init_exclude`` left out) when ``work_dir`` holds no checkpoint yet.
    Returns the trained model."""
    cfg = TrainConfig(steps=int(steps), batch_size=int(batch_size),
                      crop_size=tuple(crop_size), learning_rate=float(learning_rate),
                      seed=int(seed), checkpoint_every=0, summary_every=50)
    init_fn = None
    if init_checkpoint and not fileio.exists(os.path.join(work_dir, "checkpoints")):
        init_fn = lambda model: warm_start(model, init_checkpoint,  # noqa: E731
                                           tuple(init_exclude))
    task = SegmentationTask(
        model_fn=model_fn, input_fn=train_input_fn(info, train_pattern, cfg),
        learning_rate=make_learning_rate("poly", cfg.learning_rate, cfg.steps, 0.0, 0.9,
                                         0),
        momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        ignore_label=info.ignore_label, total_steps=cfg.steps, init_fn=init_fn)
    loop = TrainLoop(task, strategies.make_strategy("default"), work_dir, cfg.steps,
                     checkpoint_every=0, summary_every=cfg.summary_every, progress=False)
    loop.run()
    return task.model


def rerank_overrides(overrides, steps):
    """``overrides`` with :func:`short_run_bn_momentum` unless they set ``bn_momentum``."""
    overrides = dict(overrides or {})
    overrides.setdefault("bn_momentum", short_run_bn_momentum(steps))
    return overrides


def train_backbone(info, train_pattern, work_dir, steps, batch_size, crop_size,
                   learning_rate, model_name="mobilenetv2_aspp", model_overrides=None,
                   seed=0):
    """The proxy's backbone trained on the target task before the search (Chen et al.
    2018 §3.3: the proxy features come from a network trained for the task):
    ``model_name`` (MobileNet-v2 + ASPP) trained for ``steps`` in ``work_dir`` — a
    training run that :class:`~nasseg_tf.search.dpc.cache.ProxyBackboneConfig`'s
    ``weights`` and the re-ranking's warm start read. Resumes; returns ``work_dir``."""
    overrides = rerank_overrides(model_overrides, steps)
    train_whole_model(
        lambda: zoo.build(model_name, num_classes=info.num_classes, **overrides),
        info, train_pattern, work_dir, steps, batch_size, crop_size, learning_rate,
        seed=seed)
    return work_dir


#: What a re-ranked model takes from the trained proxy backbone: everything but the
#: context module and the logits (the backbone's ASPP is not the cell's DPC).
RERANK_INIT_EXCLUDE = (r"context/.*", r"logits/.*")


def finetune_and_evaluate(model_fn, info, train_pattern, val_pattern, work_dir, steps,
                          batch_size, crop_size, learning_rate, eval_images=None, seed=0,
                          init_checkpoint=None, init_exclude=RERANK_INIT_EXCLUDE):
    """One re-ranked model: ``model_fn()`` trained for ``steps`` steps
    (:func:`train_whole_model`, warm-started from ``init_checkpoint`` except
    ``init_exclude``), evaluated on ``val_pattern`` (the first ``eval_images``);
    writes ``work_dir/eval_results.json`` and returns ``{"miou": ...}``. Also the way to
    fine-tune a hand-designed head (ASPP, a published cell) at the re-ranking's budget."""
    model = train_whole_model(model_fn, info, train_pattern, work_dir, steps, batch_size,
                              crop_size, learning_rate, seed=seed,
                              init_checkpoint=init_checkpoint, init_exclude=init_exclude)
    dataset = build_dataset(val_pattern, num_classes=info.num_classes,
                            ignore_label=info.ignore_label, training=False)
    results = evaluation.evaluate(model, dataset, info.num_classes,
                                  ignore_label=info.ignore_label, max_images=eval_images,
                                  progress=False)
    atomic_write_json(os.path.join(work_dir, "eval_results.json"),
                      {"miou": results["miou"], "steps": int(steps)}, indent=2)
    return {"miou": float(results["miou"])}


def finetune_rerank_fn(info, train_pattern, val_pattern, steps, batch_size, crop_size,
                       learning_rate, model_name="mobilenetv2_dpc", model_overrides=None,
                       eval_images=None, seed=0, init_checkpoint=None):
    """The default ``rerank_fn``: trains the whole model for ``steps`` steps and returns
    its val mIoU (:func:`finetune_and_evaluate`).

    ``init_checkpoint``: the trained proxy backbone (:func:`train_backbone`); the model
    starts from its weights except :data:`RERANK_INIT_EXCLUDE` (the paper fine-tunes
    whole models from the trained backbone; from a random init a short budget scores
    at or below the majority class). Batch norms get :func:`short_run_bn_momentum`
    unless ``model_overrides`` sets ``bn_momentum``. Checkpoints go to
    ``work_dir/checkpoints``, so an interrupted re-ranking resumes.
    """
    overrides = rerank_overrides(model_overrides, steps)

    def rerank_fn(cell, work_dir):
        return finetune_and_evaluate(
            lambda: build_rerank_model(cell, info.num_classes, model_name, overrides),
            info, train_pattern, val_pattern, work_dir, steps, batch_size, crop_size,
            learning_rate, eval_images=eval_images, seed=seed,
            init_checkpoint=init_checkpoint)

    return rerank_fn


# --------------------------------------------------------------------------------------
# Does the search beat random cells?


def random_baseline(rows, space, objective_fn, project_dir, count, seed=0, verbose=True,
                    ranked_by=OBJECTIVE):
    """Scores ``count`` fresh uniformly random cells with the full proxy budget.

    The cells are sampled with their own seed and differ from every searched trial;
    each is trained without early stopping. Writes ``random_baseline.json`` after each
    cell: each cell's val mIoU (and score, when the objective returns one), the median
    random and the search's best on the metric the search ranked by (``ranked_by``:
    ``val_miou``, or ``score`` in a cost-scored search, where a cheap cell of lower
    mIoU may rank first), and whether the best beats the median on it. The raw val
    mIoU's median and the best-ranked cell's val mIoU are kept either way. A rerun with
    the same ``count``, ``seed`` and ``ranked_by`` reuses the cells already scored.
    This answers "does the search beat the median random cell on the proxy?" on the
    same objective.
    """
    if ranked_by not in RANKED_METRICS:
        raise ValueError(f"random_baseline: ranked_by must be one of "
                         f"{', '.join(RANKED_METRICS)}, got {ranked_by!r}")
    path = os.path.join(project_dir, "random_baseline.json")
    taken = {DPCCell.from_config(row["cell"]).key() for row in rows}
    rng = np.random.default_rng([int(seed), 1_000_003])
    cells = []
    while len(cells) < count:
        cell = space.sample(rng)
        if cell.key() not in taken:
            taken.add(cell.key())
            cells.append(cell)
    done = {}
    if fileio.exists(path):
        previous = fileio.read_json(path)
        if (previous.get("count") == count and previous.get("seed") == seed
                and previous.get("ranked_by", OBJECTIVE) == ranked_by):
            done = {DPCCell.from_config(e["cell"]).key(): e for e in previous["entries"]}
    best = rows[0] if rows else None
    entries = []
    for i, cell in enumerate(cells):
        if cell.key() in done:
            entries.append(done[cell.key()])
        else:
            result = objective_fn(cell, None, None)
            entry = {"cell": cell.to_config(), "describe": cell.describe(),
                     "val_miou": float(result["miou"]),
                     "steps": int(result.get("steps", 0))}
            if result.get("score") is not None:
                entry[SCORE] = float(result["score"])
            if ranked_by not in entry:
                raise ValueError(f"random_baseline: the objective returned no "
                                 f"{ranked_by!r} for a random cell")
            entries.append(entry)
            if verbose:
                shown = "".join(f" {k} {entry[k]:.4f}" for k in (OBJECTIVE, SCORE)
                                if k in entry)
                print(f"[baseline] random cell {i + 1}/{count}:{shown}", flush=True)
        median = float(np.median([e[ranked_by] for e in entries]))
        best_value = None if best is None else float(best[ranked_by])
        summary = {"count": count, "seed": seed, "complete": len(entries) == count,
                   "entries": entries, "ranked_by": ranked_by,
                   "median_random": median, "best_searched": best_value,
                   "best_beats_median": (None if best is None
                                         else bool(best_value > median)),
                   "median_random_miou": float(np.median([e["val_miou"]
                                                          for e in entries])),
                   "best_searched_miou": None if best is None else best["val_miou"]}
        atomic_write_json(path, summary, indent=2)
    return summary
