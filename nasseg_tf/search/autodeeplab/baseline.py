"""Does the Auto-DeepLab search beat chance? Random architectures at equal budget.

Random search at the searched architecture's training budget is the baseline NAS
practice asks of a search (Li & Talwalkar, UAI 2019; Liu et al. 2019 compare with
hand-designed networks only). :func:`random_baseline` draws ``count`` distinct
architectures uniformly from the space the search decodes into
(:mod:`nasseg_tf.search_space.sampling`: cell and path, the path uniform over legal
paths by counting them), retrains each from scratch with the one training loop
(:func:`nasseg_tf.train.experiment.train`) and the searched run's exact
:class:`~nasseg_tf.train.experiment.TrainConfig` (steps, batch, crop, schedule, seed),
evaluates it, and reports the searched model's mIoU against their distribution.

Resumable: ``random_baseline.json`` is rewritten atomically after every finished
architecture; a rerun with the same settings draws the same architectures, keeps the
finished ones and continues with the next (a half-trained one resumes from its own
checkpoints in ``random_<i>/``).
"""

import dataclasses
import json
import os
import time

import numpy as np

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_json
from nasseg_tf.search_space.genotypes import NetworkGenotype
from nasseg_tf.search_space.sampling import architecture_key, sample_distinct
from nasseg_tf.train import experiment

RESULTS_FILE = "random_baseline.json"


def make_retrain_fn(model, data, training, evaluation, progress=False):
    """The default ``retrain_fn(genotype, work_dir) -> mIoU``: the searched run's
    :class:`ModelConfig` with ``genotype`` in place of its own, trained from scratch in
    ``work_dir`` with ``training`` and evaluated with ``evaluation`` on the run's val
    split."""

    def retrain_fn(genotype, work_dir):
        model_cfg = dataclasses.replace(model, genotype=genotype)
        out = experiment.train(work_dir, model_cfg, data, training, evaluation,
                               progress=progress, argv=["random_baseline", work_dir])
        results = out["eval"] or experiment.run_evaluation(
            out["model"], out["dataset_info"], out["eval_pattern"], evaluation, work_dir,
            step=out["metrics"].get("step"), progress=False)
        return float(results["miou"])

    return retrain_fn


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def summarize(searched_miou, random_mious):
    """The searched mIoU against the random ones: mean, std (ddof 1), min, max, median,
    and ``searched_rank`` — 1 + the number of random architectures scoring strictly
    higher (1 = best of all ``K + 1``)."""
    scores = np.asarray(random_mious, dtype=float)
    if not len(scores):
        return {"count": 0}
    summary = {"count": int(len(scores)), "mean": float(scores.mean()),
               "std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
               "min": float(scores.min()), "max": float(scores.max()),
               "median": float(np.median(scores))}
    if searched_miou is not None:
        summary["searched_rank"] = int(1 + np.sum(scores > searched_miou))
        summary["out_of"] = int(len(scores) + 1)
        summary["random_beaten"] = int(np.sum(scores < searched_miou))
    return summary


def random_baseline(project_dir, searched, retrain_fn, count, seed=0, searched_miou=None,
                    settings=None, verbose=True):
    """Retrains ``count`` random architectures; writes and returns the comparison.

    Args:
      project_dir: output folder: ``random_baseline.json`` and ``random_<i>/`` runs
        (``searched/`` when the searched architecture is retrained here too).
      searched: the searched :class:`NetworkGenotype`; the random ones have its number
        of layers and blocks and are all different from it and from each other.
      retrain_fn: ``retrain_fn(genotype, work_dir) -> mIoU`` (:func:`make_retrain_fn`).
      count: K, the number of random architectures.
      seed: the sampling seed (same seed, same architectures).
      searched_miou: the searched model's mIoU at this budget; None: retrain it here
        with ``retrain_fn`` as well (then all ``K + 1`` share every setting).
      settings: a JSON-able description of the budget (e.g. the TrainConfig); a rerun
        reuses finished results only when ``count``, ``seed``, the searched
        architecture and ``settings`` are the same.
      verbose: print a line per finished architecture.

    Returns:
      The dict written to ``random_baseline.json``: ``settings``, ``complete``,
      ``searched`` (genotype, mIoU), ``entries`` (each random genotype, its mIoU and
      seconds) and ``summary`` (:func:`summarize`).
    """
    fileio.makedirs(project_dir)
    path = os.path.join(project_dir, RESULTS_FILE)
    settings = _jsonable({"count": int(count), "seed": int(seed),
                          "searched": architecture_key(searched),
                          "budget": settings or {}})
    rng = np.random.default_rng([int(seed), 14_000_002])
    genotypes = sample_distinct(rng, int(count), len(searched.path),
                                searched.cell.num_blocks, exclude=[searched])
    previous = fileio.read_json(path) if fileio.exists(path) else {}
    if previous.get("settings") != settings:
        previous = {}
    done = {architecture_key(NetworkGenotype.from_config(e["genotype"])): e
            for e in previous.get("entries", [])}
    state = {"searched": {"genotype": searched.to_config(), "miou": searched_miou,
                          "retrained_here": searched_miou is None}}
    if searched_miou is None and previous.get("searched"):  # retrained here before
        state["searched"] = previous["searched"]
    entries = []

    def write(complete):
        mious = [e["miou"] for e in entries]
        summary = {"settings": settings, "complete": complete, "searched": state["searched"],
                   "entries": entries, "summary": summarize(state["searched"]["miou"], mious)}
        atomic_write_json(path, summary, indent=2)
        return summary

    if state["searched"]["miou"] is None:
        start = time.time()
        miou = retrain_fn(searched, os.path.join(project_dir, "searched"))
        state["searched"] = dict(state["searched"], miou=float(miou),
                                 seconds=round(time.time() - start, 3))
        if verbose:
            print(f"[random baseline] searched architecture retrained: mIoU {miou:.4f}",
                  flush=True)
    write(False)
    for i, genotype in enumerate(genotypes):
        key = architecture_key(genotype)
        if key in done:
            entries.append(done[key])
            continue
        work_dir = os.path.join(project_dir, f"random_{i:03d}")
        start = time.time()
        miou = float(retrain_fn(genotype, work_dir))
        entries.append({"index": i, "genotype": genotype.to_config(),
                        "describe": genotype.describe(), "miou": miou,
                        "seconds": round(time.time() - start, 3)})
        if verbose:
            print(f"[random baseline] random architecture {i + 1}/{count}: mIoU "
                  f"{miou:.4f} (path {list(genotype.downsample_rates)})", flush=True)
        write(False)
    return write(True)


def report_lines(result):
    """Human-readable lines: the searched mIoU against the random distribution."""
    summary, searched = result["summary"], result["searched"]["miou"]
    if not summary.get("count"):
        return [f"searched mIoU {searched:.3f}; no random architectures retrained"]
    std = summary["std"]
    lines = [f"random architectures (K = {summary['count']}, same budget): mIoU mean "
             f"{summary['mean']:.3f}" + (f" ± {std:.3f} (std)" if std is not None else "")
             + f", min {summary['min']:.3f}, max {summary['max']:.3f}",
             f"searched mIoU {searched:.3f}: rank {summary['searched_rank']} of "
             f"{summary['out_of']} (beats {summary['random_beaten']} of "
             f"{summary['count']} random)"]
    if summary["count"] < 2:
        lines.append("(one random architecture is not a distribution: raise K)")
    return lines
