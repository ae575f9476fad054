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
from nasseg_tf.search_space.dpc import DPCCell
from nasseg_tf.train import evaluation, strategies
from nasseg_tf.train.experiment import TrainConfig
from nasseg_tf.train.loop import TrainLoop
from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate


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


# --------------------------------------------------------------------------------------
# Re-ranking.


def rerank(rows, rerank_fn, project_dir, top_k, settings=None, verbose=True):
    """Re-ranks the ``top_k`` leaderboard rows with ``rerank_fn`` (whole-model
    fine-tuning, Chen et al. 2018 §3.3: the proxy's top 50).

    ``rerank_fn(cell, work_dir) -> dict(miou=...)``. Results go to
    ``<project_dir>/rerank.json`` after each model (a rerun with the same ``settings``
    skips the cells already done): every entry's proxy and re-ranked score and rank,
    and the Spearman ρ between proxy and re-ranked scores. The winner is also written
    to ``rerank_best_cell.json``.
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
        order = sorted(range(len(entries)),
                       key=lambda i: (-entries[i]["rerank_miou"], entries[i]["proxy_rank"]))
        for position, i in enumerate(order, 1):
            entries[i]["rerank_rank"] = position
        summary = {"settings": settings, "top_k": top_k, "complete": final,
                   "spearman": None if math.isnan(rho) else rho, "entries": entries,
                   "best": entries[order[0]] if entries else None}
        atomic_write_json(path, summary, indent=2)
        return summary

    summary = write(False)
    for row in rows[:top_k]:
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
            print(f"[rerank] {len(entries)}/{min(top_k, len(rows))}: trial "
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


def finetune_rerank_fn(info, train_pattern, val_pattern, steps, batch_size, crop_size,
                       learning_rate, model_name="mobilenetv2_dpc", model_overrides=None,
                       eval_images=None, seed=0):
    """The default ``rerank_fn``: trains the whole model for ``steps`` steps (poly LR
    from ``learning_rate``, DeepLab's recipe otherwise) and returns its val mIoU.

    Checkpoints go to ``work_dir/checkpoints``, so an interrupted re-ranking resumes.
    The input pipeline's other settings (scale augmentation, shuffle buffer) are
    ``Training``'s (gin-configurable, DeepLab defaults).
    """
    cfg = TrainConfig(steps=int(steps), batch_size=int(batch_size),
                      crop_size=tuple(crop_size), learning_rate=float(learning_rate),
                      seed=int(seed), checkpoint_every=0, summary_every=50)

    def rerank_fn(cell, work_dir):
        strategy = strategies.make_strategy("default")
        task = SegmentationTask(
            model_fn=lambda: build_rerank_model(cell, info.num_classes, model_name,
                                                model_overrides),
            input_fn=train_input_fn(info, train_pattern, cfg),
            learning_rate=make_learning_rate("poly", cfg.learning_rate, cfg.steps, 0.0,
                                             0.9, 0),
            momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            ignore_label=info.ignore_label, total_steps=cfg.steps)
        loop = TrainLoop(task, strategy, work_dir, cfg.steps, checkpoint_every=0,
                         summary_every=cfg.summary_every, progress=False)
        loop.run()
        dataset = build_dataset(val_pattern, num_classes=info.num_classes,
                                ignore_label=info.ignore_label, training=False)
        results = evaluation.evaluate(task.model, dataset, info.num_classes,
                                      ignore_label=info.ignore_label,
                                      max_images=eval_images, progress=False)
        atomic_write_json(os.path.join(work_dir, "eval_results.json"),
                          {"miou": results["miou"], "steps": cfg.steps}, indent=2)
        return {"miou": float(results["miou"])}

    return rerank_fn


# --------------------------------------------------------------------------------------
# Does the search beat random cells?


def random_baseline(rows, space, objective_fn, project_dir, count, seed=0, verbose=True):
    """Scores ``count`` fresh uniformly random cells with the full proxy budget.

    The cells are sampled with their own seed and differ from every searched trial;
    each is trained without early stopping. Writes ``random_baseline.json`` (each
    cell's score, their median, the search's best score and whether it beats the
    median) after each cell; a rerun with the same ``count`` and ``seed`` reuses the
    cells already scored. This answers "does the search beat the median random cell on
    the proxy?" on the same objective.
    """
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
        if previous.get("count") == count and previous.get("seed") == seed:
            done = {DPCCell.from_config(e["cell"]).key(): e for e in previous["entries"]}
    best = rows[0]["val_miou"] if rows else None
    entries = []
    for i, cell in enumerate(cells):
        if cell.key() in done:
            entries.append(done[cell.key()])
        else:
            result = objective_fn(cell, None, None)
            entries.append({"cell": cell.to_config(), "describe": cell.describe(),
                            "val_miou": float(result["miou"]),
                            "steps": int(result.get("steps", 0))})
            if verbose:
                print(f"[baseline] random cell {i + 1}/{count}: val_miou "
                      f"{entries[-1]['val_miou']:.4f}", flush=True)
        scores = [e["val_miou"] for e in entries]
        median = float(np.median(scores))
        summary = {"count": count, "seed": seed, "complete": len(entries) == count,
                   "entries": entries, "median_random_miou": median,
                   "best_searched_miou": best,
                   "best_beats_median": None if best is None else bool(best > median)}
        atomic_write_json(path, summary, indent=2)
    return summary
