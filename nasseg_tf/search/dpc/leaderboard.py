"""The DPC search's results as people read them: leaderboard, top cells, pictures.

``leaderboard.csv`` / ``.json`` (every completed trial, best first), ``top_cells/``
(the best cells in the official DPC JSON), ``best_cell.json``; at the end of the search
also the pictures ``best_cell.png`` and ``search_progress.png``
(:mod:`nasseg_tf.search.dpc.plots`) and TensorBoard summaries in ``tensorboard/``
(``dpc/val_miou`` and ``dpc/best_so_far`` per trial, the best cell's picture).
"""

import csv
import io
import json
import math
import os

import tensorflow as tf
from keras_tuner.engine.trial import TrialStatus

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_json, atomic_write_text
from nasseg_tf.search.dpc import plots
from nasseg_tf.search.dpc.oracles import OBJECTIVE
from nasseg_tf.search_space.dpc import DPCCell


LEADERBOARD_COLUMNS = ("rank", "trial_id", "val_miou", "steps", "stopped_early",
                       "seconds", "origin", "parent", "cell", "describe")
BEST_CELL_PNG = "best_cell.png"
PROGRESS_PNG = "search_progress.png"
TENSORBOARD_DIR = "tensorboard"


def leaderboard(oracle):
    """Completed trials, best first: a list of dicts with :data:`LEADERBOARD_COLUMNS`
    (``cell`` is the official JSON config list). An early-stopped trial is ranked by
    the mIoU of its last evaluation (``stopped_early`` is true, ``steps`` tells where);
    failed trials are not listed."""
    rows = []
    for rank, trial in enumerate(oracle.completed_trials(), 1):
        cell = oracle.trial_cell(trial)

        def last(name, trial=trial):
            return (trial.metrics.get_last_value(name)
                    if trial.metrics.exists(name) else None)

        origin = oracle.origins.get(str(trial.trial_id), {})
        seconds = last("seconds")
        rows.append({"rank": rank, "trial_id": trial.trial_id,
                     "val_miou": float(trial.score), "steps": int(last("steps") or 0),
                     "stopped_early": bool(last("stopped_early")),
                     "seconds": None if seconds is None else round(float(seconds), 3),
                     "origin": origin.get("kind", "unknown"),
                     "parent": origin.get("parent"), "cell": cell.to_config(),
                     "describe": cell.describe()})
    return rows


def write_leaderboard(oracle, project_dir, top_k=10, final=False):
    """Writes ``leaderboard.json``, ``leaderboard.csv``, ``top_cells/top_XX.json`` (the
    ``top_k`` best cells) and ``best_cell.json`` into ``project_dir``, atomically.

    Called by the chief (or the single process) only: periodically during the search
    (cheap: JSON and CSV), and once with ``final=True`` at its end, which also draws
    ``best_cell.png`` and ``search_progress.png`` (:func:`write_pictures`) and writes the
    TensorBoard summaries (:func:`write_tensorboard`; about a second in all).

    Returns the leaderboard rows.
    """
    rows = leaderboard(oracle)
    statuses = [t.status for t in oracle.trials.values()]
    atomic_write_json(os.path.join(project_dir, "leaderboard.json"), {
        "objective": OBJECTIVE, "direction": "max", "max_trials": oracle.max_trials,
        "num_trials": len(statuses), "num_completed": len(rows),
        "num_failed": statuses.count(TrialStatus.FAILED),
        "num_running": statuses.count(TrialStatus.RUNNING), "entries": rows}, indent=2)
    text = io.StringIO()
    writer = csv.DictWriter(text, LEADERBOARD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "cell": json.dumps(row["cell"], separators=(",", ":")),
                         "val_miou": f"{row['val_miou']:.6f}"})
    atomic_write_text(os.path.join(project_dir, "leaderboard.csv"), text.getvalue())

    folder = os.path.join(project_dir, "top_cells")
    fileio.makedirs(folder)
    width = max(2, len(str(top_k)))
    keep = set()
    for row in rows[:top_k]:
        name = f"top_{row['rank']:0{width}d}"
        keep.add(f"{name}.json")
        DPCCell.from_config(row["cell"], name).save(os.path.join(folder, f"{name}.json"))
    for stale in fileio.listdir(folder):
        if stale.startswith("top_") and stale.endswith(".json") and stale not in keep:
            fileio.remove(os.path.join(folder, stale))
    if rows:
        DPCCell.from_config(rows[0]["cell"]).save(os.path.join(project_dir,
                                                               "best_cell.json"))
    if final:
        write_pictures(rows, project_dir)
        write_tensorboard(rows, project_dir)
    return rows


def write_pictures(rows, project_dir, baseline=None):
    """Draws ``best_cell.png`` (the best row's cell, when there is one) and
    ``search_progress.png`` (val mIoU per trial, the best so far and, with the
    :func:`random_baseline` summary ``baseline``, the random cells' median) into
    ``project_dir`` (:mod:`nasseg_tf.search.dpc.plots`, atomic writes)."""

    if rows:
        plots.plot_dpc_cell(rows[0]["cell"], os.path.join(project_dir, BEST_CELL_PNG),
                            title=f"best DPC cell: trial {rows[0]['trial_id']}, val mIoU "
                                  f"{rows[0]['val_miou']:.4f}")
    plots.plot_dpc_search(rows, os.path.join(project_dir, PROGRESS_PNG), baseline)


def write_tensorboard(rows, project_dir):
    """Writes the search to TensorBoard in ``<project_dir>/tensorboard/``.

    Scalars ``dpc/val_miou`` and ``dpc/best_so_far`` for every completed trial at step =
    trial number (the best so far in trial order), and at the last trial's step the
    best cell as image ``dpc/best_cell`` (``best_cell.png``, when drawn) and text
    ``dpc/best_cell_json`` (trial, score, cell JSON).

    Idempotent: each call writes the whole history into a fresh event file, then removes
    the folder's older event files, so a resumed or rerun search shows each trial once.
    Only the chief (or the single process) calls it, via ``write_leaderboard(...,
    final=True)``. Returns the folder.
    """
    folder = os.path.join(project_dir, TENSORBOARD_DIR)
    fileio.makedirs(folder)
    old = [name for name in fileio.listdir(folder)
           if name.startswith("events.out.tfevents.")]
    points = plots.trial_order(rows)
    writer = tf.summary.create_file_writer(folder)
    try:
        with writer.as_default():
            best = -math.inf
            for number, row in points:
                best = max(best, float(row["val_miou"]))
                tf.summary.scalar("dpc/val_miou", float(row["val_miou"]), step=number)
                tf.summary.scalar("dpc/best_so_far", best, step=number)
            png = os.path.join(project_dir, BEST_CELL_PNG)
            if rows:
                last, top = points[-1][0], rows[0]
                tf.summary.text("dpc/best_cell_json",
                                f"trial {top['trial_id']}, val mIoU {top['val_miou']:.4f}: "
                                f"`{json.dumps(top['cell'])}`", step=last)
                if fileio.exists(png):
                    image = tf.io.decode_png(tf.io.read_file(png), channels=3)
                    tf.summary.image("dpc/best_cell", image[tf.newaxis], step=last)
        writer.flush()
    finally:
        writer.close()
    for name in old:
        fileio.remove(os.path.join(folder, name))
    return folder
