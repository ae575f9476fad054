"""The DPC search's results as people read them: leaderboard, top cells, pictures.

``leaderboard.csv`` / ``.json`` (every completed trial, best first, with its costs when
measured: ``madds``, ``params``, ``latency_ms``, and ``on_front``), ``top_cells/`` (the
best cells in the official DPC JSON), ``best_cell.json``, ``pareto_front.json`` and
``front_cells/`` (the Pareto front of val mIoU and cost, cheapest first, official
JSON); at the end of the search also the pictures ``best_cell.png``,
``search_progress.png`` and ``pareto_front.png``
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
from nasseg_tf.search.dpc.costs import COSTS, pareto_front
from nasseg_tf.search.dpc.oracles import OBJECTIVE
from nasseg_tf.search_space.dpc import DPCCell


LEADERBOARD_COLUMNS = ("rank", "trial_id", "val_miou", "score", "steps", "stopped_early",
                       "seconds", "origin", "parent", *COSTS, "on_front", "cell",
                       "describe")
BEST_CELL_PNG = "best_cell.png"
PROGRESS_PNG = "search_progress.png"
FRONT_PNG = "pareto_front.png"
FRONT_JSON = "pareto_front.json"
FRONT_DIR = "front_cells"
TENSORBOARD_DIR = "tensorboard"


def front_cost(oracle):
    """The cost of the oracle's front: its ``pareto_cost`` (the Pareto oracle), else
    Multiply-Adds."""
    return getattr(oracle, "pareto_cost", "madds")


def leaderboard(oracle):
    """Completed trials, best first: a list of dicts with :data:`LEADERBOARD_COLUMNS`
    (``cell`` is the official JSON config list). Ranked by ``score``, the oracle's
    objective: the val mIoU, or with a cost-scored objective
    (:class:`~nasseg_tf.search.dpc.objectives.CostScore`) the mIoU scalarised with the
    cell's cost; ``val_miou`` is always the raw val mIoU. An early-stopped trial is
    ranked by the score of its last evaluation (``stopped_early`` is true, ``steps`` tells where);
    failed trials are not listed. Costs not measured are None; ``on_front``: the row is
    on the Pareto front of (val mIoU, :func:`front_cost`) among the rows with that cost.
    """
    rows = []
    for rank, trial in enumerate(oracle.completed_trials(), 1):
        cell = oracle.trial_cell(trial)

        def last(name, trial=trial):
            return (trial.metrics.get_last_value(name)
                    if trial.metrics.exists(name) else None)

        origin = oracle.origins.get(str(trial.trial_id), {})
        seconds = last("seconds")
        rows.append({"rank": rank, "trial_id": trial.trial_id,
                     # "miou": the raw mIoU of projects from before the "score" metric
                     "val_miou": float(last("miou") if trial.metrics.exists("miou")
                                       else last(OBJECTIVE)),
                     "score": float(trial.score), "steps": int(last("steps") or 0),
                     "stopped_early": bool(last("stopped_early")),
                     "seconds": None if seconds is None else round(float(seconds), 3),
                     "origin": origin.get("kind", "unknown"),
                     "parent": origin.get("parent"),
                     **{name: last(name) for name in COSTS}, "on_front": False,
                     "cell": cell.to_config(), "describe": cell.describe()})
        for name in ("madds", "params"):
            if rows[-1][name] is not None:
                rows[-1][name] = int(rows[-1][name])
    for row in front_rows(rows, front_cost(oracle)):
        row["on_front"] = True
    return rows


def front_rows(rows, cost="madds"):
    """The rows on the Pareto front of (val mIoU up, ``cost`` down), cheapest first
    (rows without that cost are left out)."""
    known = [row for row in rows if row.get(cost) is not None]
    return [known[i] for i in pareto_front([(r["val_miou"], r[cost]) for r in known])]


def write_front(rows, project_dir, cost="madds"):
    """Writes ``pareto_front.json`` (the front's rows, cheapest first, with the cost
    they are a front of) and ``front_cells/front_XX.json`` (their cells in the official
    DPC JSON, in the same order), atomically; stale ``front_XX.json`` files are removed.
    Returns the front's rows."""
    front = front_rows(rows, cost)
    atomic_write_json(os.path.join(project_dir, FRONT_JSON), {
        "objectives": {OBJECTIVE: "max", cost: "min"}, "cost": cost, "entries": front},
        indent=2)
    _write_cells(os.path.join(project_dir, FRONT_DIR), "front",
                 list(enumerate(front, 1)), len(front))
    return front


def _write_cells(folder, prefix, numbered_rows, largest):
    """``<folder>/<prefix>_NN.json`` (official DPC JSON) for each ``(number, row)``;
    other ``<prefix>_*.json`` files there are removed (a previous write's)."""
    fileio.makedirs(folder)
    width = max(2, len(str(largest)))
    keep = set()
    for number, row in numbered_rows:
        name = f"{prefix}_{number:0{width}d}"
        keep.add(f"{name}.json")
        DPCCell.from_config(row["cell"], name).save(os.path.join(folder, f"{name}.json"))
    for stale in fileio.listdir(folder):
        if stale.startswith(f"{prefix}_") and stale.endswith(".json") \
                and stale not in keep:
            fileio.remove(os.path.join(folder, stale))


def write_leaderboard(oracle, project_dir, top_k=10, final=False, references=None):
    """Writes ``leaderboard.json``, ``leaderboard.csv``, ``top_cells/top_XX.json`` (the
    ``top_k`` best cells), ``best_cell.json`` and the Pareto front (:func:`write_front`)
    into ``project_dir``, atomically.

    Called by the chief (or the single process) only: periodically during the search
    (cheap: JSON and CSV), and once with ``final=True`` at its end, which also draws
    ``best_cell.png``, ``search_progress.png`` and, when the rows have Multiply-Adds,
    ``pareto_front.png`` with the ``references`` marked
    (:func:`nasseg_tf.search.dpc.costs.reference_costs`; :func:`write_pictures`) and
    writes the TensorBoard summaries (:func:`write_tensorboard`; about a second in all).

    Returns the leaderboard rows.
    """
    rows = leaderboard(oracle)
    statuses = [t.status for t in oracle.trials.values()]
    atomic_write_json(os.path.join(project_dir, "leaderboard.json"), {
        "objective": oracle.objective.name, "direction": "max", "max_trials": oracle.max_trials,
        "num_trials": len(statuses), "num_completed": len(rows),
        "num_failed": statuses.count(TrialStatus.FAILED),
        "num_running": statuses.count(TrialStatus.RUNNING), "entries": rows}, indent=2)
    text = io.StringIO()
    writer = csv.DictWriter(text, LEADERBOARD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**{k: "" if v is None else v for k, v in row.items()},
                         "cell": json.dumps(row["cell"], separators=(",", ":")),
                         "val_miou": f"{row['val_miou']:.6f}",
                         "score": f"{row['score']:.6f}"})
    atomic_write_text(os.path.join(project_dir, "leaderboard.csv"), text.getvalue())

    _write_cells(os.path.join(project_dir, "top_cells"), "top",
                 [(row["rank"], row) for row in rows[:top_k]], top_k)
    if rows:
        DPCCell.from_config(rows[0]["cell"]).save(os.path.join(project_dir,
                                                               "best_cell.json"))
    write_front(rows, project_dir, front_cost(oracle))
    if final:
        write_pictures(rows, project_dir, references=references)
        write_tensorboard(rows, project_dir)
    return rows


def write_pictures(rows, project_dir, baseline=None, references=None):
    """Draws ``best_cell.png`` (the best row's cell, when there is one),
    ``search_progress.png`` (val mIoU per trial, the best so far and, with the
    :func:`random_baseline` summary ``baseline``, the random cells' median) and, when
    the rows have Multiply-Adds, ``pareto_front.png`` (mIoU vs Multiply-Adds, the
    ``references`` marked) into ``project_dir`` (:mod:`nasseg_tf.search.dpc.plots`,
    atomic writes)."""

    if rows:
        plots.plot_dpc_cell(rows[0]["cell"], os.path.join(project_dir, BEST_CELL_PNG),
                            title=f"best DPC cell: trial {rows[0]['trial_id']}, val mIoU "
                                  f"{rows[0]['val_miou']:.4f}")
    plots.plot_dpc_search(rows, os.path.join(project_dir, PROGRESS_PNG), baseline)
    if any(row.get("madds") is not None for row in rows):
        plots.plot_pareto_front(rows, os.path.join(project_dir, FRONT_PNG), references)


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
