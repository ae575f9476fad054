"""The DPC architecture search: a KerasTuner tuner, leaderboard, re-ranking (SPEC §3.3).

Chen et al. 2018 (§3.3, §4.1) score each candidate Dense Prediction Cell on a proxy
task — DPC + logits trained on cached backbone features, early-stopped, scored by val
mIoU — sample the next candidates uniformly and near the best so far (the oracles of
:mod:`nasseg_tf.search.dpc_oracle`), then re-rank the best 50 by fine-tuning whole
models. This module holds

* :class:`DPCTuner`, a ``keras_tuner`` ``BaseTuner`` (the objective is not a Keras
  ``fit``): ``run_trial`` decodes the trial's cell, writes ``trial_<id>/cell.json``
  (the official DPC JSON), calls an injectable ``objective_fn(cell, trial,
  should_stop) -> dict(miou=..., steps=..., stopped_early=..., seconds=...,
  history=[(step, miou), ...])`` and reports ``val_miou`` (maximised). ``should_stop(step,
  miou)`` sends the curve point to the oracle, which applies the median stopping rule
  (:meth:`DPCOracle.should_stop`: stop when below the median of the completed trials'
  mIoU at the same step);
* the objectives registry :data:`OBJECTIVES`: ``proxy`` (the real proxy task of
  :mod:`nasseg_tf.search.dpc_proxy`) and ``synthetic`` (a cheap deterministic score of
  the encoding, for tests and dry runs of the search machinery);
* the leaderboard (``leaderboard.csv``/``.json``, ``top_cells/top_XX.json``,
  ``best_cell.json``; at the end of the search also the pictures ``best_cell.png`` and
  ``search_progress.png`` of :mod:`nasseg_tf.search.plots` and TensorBoard summaries in
  ``tensorboard/``: ``dpc/val_miou`` and ``dpc/best_so_far`` per trial, the best cell's
  picture), re-ranking (``rerank.json`` with each re-ranked score and the
  Spearman correlation between proxy and re-ranked scores) and :func:`run_search`, the
  gin-configured entry point of ``nasseg-search-dpc``.

Distribution is KerasTuner's: the same command runs as the chief (``KERASTUNER_TUNER_ID
= chief``: serves the oracle over gRPC at ``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT``,
then writes the leaderboard and re-ranks) or a worker (any other id: asks the chief for
trials and runs them), or alone when the variables are unset. Restarts:

* a killed chief, started again with the same command, reloads ``oracle.json`` and the
  trial files and goes on; no completed trial is lost or run again, and a trial that
  was running stays with its worker (see :mod:`~nasseg_tf.search.dpc_oracle`);
* workers survive a chief restart: a call that fails because the chief is gone is
  retried until it is back (``reconnect_seconds``, 1 h);
* a worker restarted with its old ``KERASTUNER_TUNER_ID`` is handed its unfinished
  trial again. A worker that died for good leaves its trial running: the chief then
  waits for it, so start a worker with that id again to finish the search;
* a worker started after the chief has finished waits for a chief (KerasTuner's
  client timeout) — start workers while the search runs.
"""

import csv
import dataclasses
import io
import json
import math
import os
import time

import gin
import numpy as np
from keras_tuner.engine.base_tuner import BaseTuner
from keras_tuner.engine.trial import TrialStatus

from nasseg_tf.fileio import atomic_write_json, atomic_write_text
from nasseg_tf.search.dpc_oracle import CURVE_METRIC, OBJECTIVE, make_oracle
from nasseg_tf.search_space.dpc import (SEARCH_GRIDS, SEARCH_RATES, DPCCell,
                                        DPCSearchSpace)

_ENV_IP, _ENV_PORT, _ENV_ID = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                               "KERASTUNER_TUNER_ID")


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
# Objectives.


@gin.configurable("SyntheticObjective")
def synthetic_objective(space, seed=0, steps=100, eval_every=25, seconds=0.0, **unused):
    """A cheap deterministic stand-in for the proxy task (tests, dry runs).

    The final "mIoU" of a cell is ``0.2 + 0.6·mean_i((w_op[i, op_i] + ½·w_in[i, in_i])
    / 1.5)`` with fixed uniform random tables ``w`` (seeded), and the validation curve
    rises to it as ``1 - exp(-4·step/steps)`` (normalised), evaluated every
    ``eval_every`` steps; ``should_stop`` is honoured. ``seconds`` of sleep per trial
    make a trial last long enough to test a distributed run.
    """
    del unused
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


def proxy_objective(space, project_dir, data, cache_dir=None, progress=False, **unused):
    """The DPC proxy task (:mod:`nasseg_tf.search.dpc_proxy`, gin ``Proxy``).

    The feature cache (MobileNet-v2 features of the training and validation sets) is
    built or loaded on the first trial of each process (process-safe), so a chief that
    never runs a trial never touches the data.
    """
    del unused, space
    from nasseg_tf.search import dpc_proxy  # pylint: disable=import-outside-toplevel

    state = {}

    def objective(cell, trial=None, should_stop=None):
        del trial
        if "cache" not in state:
            info, train, val = data.resolve(project_dir)
            if not val:
                raise ValueError("the proxy task needs validation data: set "
                                 "Data.eval_pattern")
            config = dpc_proxy.ProxyConfig()
            cache = proxy_feature_cache(
                cache_dir or os.path.join(project_dir, "feature_cache"), train, val, info)
            cache.build_or_load()
            state.update(cache=cache, config=config)
        return dpc_proxy.run_proxy_trial(cell, state["cache"], state["config"],
                                         should_stop=should_stop, progress=progress)

    return objective


@gin.configurable("ProxyBackbone")
def proxy_feature_cache(cache_root, train_pattern, val_pattern, dataset_info,
                        crop_size=(513, 513), depth_multiplier=1.0, output_stride=16,
                        weights=None, seed=0, train_crops_per_image=1, progress=False):
    """The proxy's feature cache: MobileNet-v2 features (the paper: OS 16), see
    :func:`nasseg_tf.search.dpc_proxy.mobilenet_v2_cache` and ``FeatureCache``.

    ``crop_size``: the stored crops (DeepLab sizes ``16·k + 1``); ``weights``: a Keras
    weights file or training checkpoint of the backbone (None: seeded random init).
    """
    from nasseg_tf.search import dpc_proxy  # pylint: disable=import-outside-toplevel

    return dpc_proxy.mobilenet_v2_cache(
        cache_root, train_pattern, val_pattern, dataset_info, tuple(crop_size),
        depth_multiplier=depth_multiplier, output_stride=output_stride, weights=weights,
        seed=seed, train_crops_per_image=train_crops_per_image, progress=progress)


OBJECTIVES = {"proxy": proxy_objective, "synthetic": synthetic_objective}


def make_objective(name, **context):
    """``objective_fn`` of the registered objective ``name`` (see :data:`OBJECTIVES`).

    ``context``: ``space``, ``project_dir``, ``data`` (a ``DataConfig``), ``cache_dir``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown DPC search objective {name!r}; known objectives: "
                         f"{', '.join(sorted(OBJECTIVES))} ('synthetic' is a cheap "
                         "deterministic stand-in for tests and dry runs)")
    return OBJECTIVES[name](**context)


# --------------------------------------------------------------------------------------
# The tuner.


class _ReconnectingOracle:
    """A worker's oracle client that retries calls interrupted by a chief restart.

    KerasTuner's client waits for the chief when a call starts (``wait_for_ready``) but
    fails when the chief dies during the call (``UNAVAILABLE``); this wrapper retries
    such calls for up to ``timeout`` seconds. Every call is safe to repeat: the oracle
    hands a tuner its running trial again and ignores a repeated ``end_trial``.
    """

    def __init__(self, client, timeout):
        self._client = client
        self._timeout = float(timeout)

    def __getattr__(self, name):
        import grpc  # pylint: disable=import-outside-toplevel

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            deadline = time.time() + self._timeout
            while True:
                try:
                    return attr(*args, **kwargs)
                except grpc.RpcError as e:
                    if (e.code() != grpc.StatusCode.UNAVAILABLE
                            or time.time() > deadline):
                        raise
                    time.sleep(1.0)

        return call


def _is_distributed():
    return _ENV_IP in os.environ


def role():
    """``chief``, ``worker`` or ``single`` (from KerasTuner's environment variables)."""
    if not _is_distributed():
        return "single"
    missing = [v for v in (_ENV_PORT, _ENV_ID) if v not in os.environ]
    if missing:
        raise ValueError(f"{_ENV_IP} is set but {' and '.join(missing)} not: a "
                         f"distributed search needs {_ENV_IP}, {_ENV_PORT} and "
                         f"{_ENV_ID} (chief / tuner0, tuner1, ...)")
    return "chief" if "chief" in os.environ[_ENV_ID] else "worker"


def serve_oracle(oracle, poll_seconds=0.2):
    """Serves ``oracle`` to the workers (KerasTuner's gRPC service) until the search
    is finished: no trial running or queued, no more trials to create, and every
    worker that asked for work told to stop (:meth:`DPCOracle.finished`).

    KerasTuner's own server loop checks every 20 s once the end is near; this one
    every ``poll_seconds``, and it also ends a restarted chief whose search was over.
    """
    # pylint: disable=import-outside-toplevel
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ[_ENV_IP]}:{os.environ[_ENV_PORT]}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"the chief cannot listen on {address}: {e}") from None
    if not port:
        raise OSError(f"the chief cannot listen on {address}")
    server.start()
    try:
        while not oracle.finished(servicer.stop_triggered):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1.0).wait()


class DPCTuner(BaseTuner):
    """Runs DPC trials: decode the cell, score it with ``objective_fn``, report.

    Files per trial (``<project_dir>/trial_<id>/``): KerasTuner's ``trial.json``,
    ``cell.json`` (the official DPC format), ``result.json`` (metrics, curve, tuner
    id), ``runs.jsonl`` (one line per run of the trial: tuner id, pid, start time).

    Args:
      oracle: a :class:`~nasseg_tf.search.dpc_oracle.DPCOracle`.
      objective_fn: ``objective_fn(cell, trial, should_stop) -> dict`` with ``miou``
        (required), ``steps``, ``stopped_early``, ``seconds``, ``history``.
      project_dir: the search's folder (KerasTuner's ``directory/project_name``).
      verbose: print a line per trial.
      reconnect_seconds: how long a worker retries calls while the chief is away.
      leaderboard_every_s: minimum seconds between leaderboard rewrites during the
        search (the chief's, after each completed trial); 0 = after every trial.
      save_top_k: top cells written as JSON files.
    """

    def __init__(self, oracle, objective_fn, project_dir, verbose=True,
                 reconnect_seconds=3600, leaderboard_every_s=10.0, save_top_k=10):
        self.space = oracle.space
        self.objective_fn = objective_fn
        self.verbose = bool(verbose)
        self.leaderboard_every_s = float(leaderboard_every_s)
        self.save_top_k = int(save_top_k)
        self._last_leaderboard = 0.0
        project_dir = os.path.abspath(project_dir)
        super().__init__(oracle, directory=os.path.dirname(project_dir),
                         project_name=os.path.basename(project_dir))
        if self._is_worker():
            self.oracle = _ReconnectingOracle(self.oracle, reconnect_seconds)
        else:
            oracle.trial_end_callback = self._trial_ended

    def _log(self, message):
        if self.verbose:
            print(message, flush=True)

    def _populate_initial_space(self):
        # Called when this tuner has no saved file of its own: resume the oracle of an
        # existing project anyway (a chief replacing a single-process run, or a process
        # that died before its first save).
        state_file = self.oracle._get_oracle_fname()  # pylint: disable=protected-access
        if not self._is_worker() and os.path.exists(state_file):
            self.oracle.reload()

    def search(self, *fit_args, **fit_kwargs):
        """Runs the search: serves the oracle (chief) or runs trials (worker, single)."""
        if role() == "chief":
            self.save()
            self._log(f"[chief] serving the oracle at {os.environ[_ENV_IP]}:"
                      f"{os.environ[_ENV_PORT]} ({len(self.oracle.trials)} trials so far)")
            serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)

    def run_trial(self, trial, *args, **kwargs):
        del args, kwargs
        cell = self.space.decode(trial.hyperparameters.values)
        trial_dir = self.get_trial_dir(trial.trial_id)
        cell.save(os.path.join(trial_dir, "cell.json"))
        start = time.time()
        with open(os.path.join(trial_dir, "runs.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"tuner_id": self.tuner_id, "pid": os.getpid(),
                                "start": start}) + "\n")
        self._log(f"[{self.tuner_id}] trial {trial.trial_id}: {cell.describe()}")
        reported = set()

        def should_stop(step, miou):
            reported.add(int(step))
            reply = self.oracle.update_trial(trial.trial_id, {CURVE_METRIC: float(miou)},
                                             step=int(step))
            return reply.status == TrialStatus.STOPPED

        result = self.objective_fn(cell, trial, should_stop)
        seconds = time.time() - start
        if not isinstance(result, dict) or "miou" not in result:
            raise ValueError(f"the objective must return a dict with 'miou', got "
                             f"{result!r}")
        history = [(int(s), float(m)) for s, m in result.get("history") or ()]
        for step, miou in history:  # curve points the objective did not report
            if step not in reported:
                self.oracle.update_trial(trial.trial_id, {CURVE_METRIC: miou}, step=step)
        steps = result.get("steps", history[-1][0] if history else 0)
        metrics = {OBJECTIVE: float(result["miou"]), "steps": float(steps),
                   "stopped_early": float(bool(result.get("stopped_early", False))),
                   "seconds": float(result.get("seconds", seconds))}
        extra = {k: v for k, v in result.items()
                 if k not in ("miou", "steps", "stopped_early", "seconds", "history",
                              "cell")}
        atomic_write_text(os.path.join(trial_dir, "result.json"), json.dumps({
            "trial_id": trial.trial_id, "tuner_id": self.tuner_id, "metrics": metrics,
            "history": history, "cell": cell.to_config(), "describe": cell.describe(),
            "objective": extra}, indent=2, default=str) + "\n")
        self._log(f"[{self.tuner_id}] trial {trial.trial_id}: {OBJECTIVE} "
                  f"{metrics[OBJECTIVE]:.4f} ({int(steps)} steps"
                  f"{', stopped early' if metrics['stopped_early'] else ''}, "
                  f"{seconds:.1f} s)")
        return metrics

    def _run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # KerasTuner's version reports at step 0; report at the trial's last step.
        metrics = self.run_trial(trial, *fit_args, **fit_kwargs)
        self.oracle.update_trial(trial.trial_id, metrics, step=int(metrics["steps"]))

    def on_trial_end(self, trial):
        if trial.status != TrialStatus.COMPLETED:
            last = (trial.message or "").strip().splitlines()[-1:] or ["?"]
            self._log(f"[{self.tuner_id}] trial {trial.trial_id} {trial.status}: {last[0]}")
        super().on_trial_end(trial)

    def _trial_ended(self, oracle, trial):
        """Chief / single process: progress line and (throttled) leaderboard."""
        done = len(oracle.end_order)
        best = oracle.completed_trials()[:1]
        score = "failed" if trial.score is None else f"{OBJECTIVE} {trial.score:.4f}"
        best_text = (f"best {best[0].score:.4f} (trial {best[0].trial_id})" if best
                     else "no completed trial yet")
        self._log(f"[search] {done}/{oracle.max_trials} trials ended; trial "
                  f"{trial.trial_id} {score}; {best_text}")
        now = time.time()
        if now - self._last_leaderboard >= self.leaderboard_every_s:
            self._last_leaderboard = now
            write_leaderboard(oracle, self.project_dir, self.save_top_k)  # no pictures


# --------------------------------------------------------------------------------------
# Leaderboard.

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
    os.makedirs(folder, exist_ok=True)
    width = max(2, len(str(top_k)))
    keep = set()
    for row in rows[:top_k]:
        name = f"top_{row['rank']:0{width}d}"
        keep.add(f"{name}.json")
        DPCCell.from_config(row["cell"], name).save(os.path.join(folder, f"{name}.json"))
    for stale in os.listdir(folder):
        if stale.startswith("top_") and stale.endswith(".json") and stale not in keep:
            os.remove(os.path.join(folder, stale))
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
    ``project_dir`` (:mod:`nasseg_tf.search.plots`, atomic writes)."""
    from nasseg_tf.search import plots  # pylint: disable=import-outside-toplevel

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
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf

    from nasseg_tf.search import plots

    folder = os.path.join(project_dir, TENSORBOARD_DIR)
    os.makedirs(folder, exist_ok=True)
    old = [name for name in os.listdir(folder) if name.startswith("events.out.tfevents.")]
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
                if os.path.exists(png):
                    image = tf.io.decode_png(tf.io.read_file(png), channels=3)
                    tf.summary.image("dpc/best_cell", image[tf.newaxis], step=last)
        writer.flush()
    finally:
        writer.close()
    for name in old:
        os.remove(os.path.join(folder, name))
    return folder


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
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
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
        os.makedirs(work_dir, exist_ok=True)
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
    from nasseg_tf.models import zoo  # pylint: disable=import-outside-toplevel

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
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.data import build_dataset
    from nasseg_tf.train import evaluation, strategies
    from nasseg_tf.train.experiment import TrainConfig, train_input_fn
    from nasseg_tf.train.loop import TrainLoop
    from nasseg_tf.train.segmentation import SegmentationTask, make_learning_rate

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
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
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


# --------------------------------------------------------------------------------------
# The gin-configured search.


@gin.configurable("DPCSearch")
@dataclasses.dataclass(frozen=True)
class DPCSearchConfig:
    """The DPC search (``nasseg-search-dpc``); defaults follow the paper where it says.

    Oracle: ``oracle`` (``random`` | ``evolution``), ``max_trials``, ``seed``;
    ``explore`` and ``top_k`` (random search: uniform-sample probability, pool of
    parents), ``population_size`` and ``sample_size`` (evolution). Space:
    ``num_branches``, ``rates``, ``grids``. Objective: ``objective`` (``proxy`` |
    ``synthetic``), the median stopping rule (``early_stopping``,
    ``early_stopping_min_trials``), ``cache_dir`` (proxy features; default
    ``<project_dir>/feature_cache``). Outputs: ``save_top_k`` cells, leaderboard
    rewrite interval. Re-ranking (0 = off; the paper: 50): ``rerank_top_k``,
    ``rerank_steps``, ``rerank_batch_size``, ``rerank_crop_size``,
    ``rerank_learning_rate``, ``rerank_model`` (a zoo name taking ``dpc_cell``) and
    ``rerank_model_overrides``, ``rerank_eval_images``. ``random_baseline``: after
    the search, score this many fresh random cells with the full budget and compare
    their median with the best searched cell (:func:`random_baseline`; 0 = off).
    """

    oracle: str = "random"
    max_trials: int = 100
    seed: int = 0
    explore: float = 0.5
    top_k: int = 10
    population_size: int = 50
    sample_size: int = 10
    num_branches: int = 5
    rates: tuple = SEARCH_RATES
    grids: tuple = SEARCH_GRIDS
    objective: str = "proxy"
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
    random_baseline: int = 0
    verbose: bool = True

    def rerank_settings(self):
        return {"steps": self.rerank_steps, "batch_size": self.rerank_batch_size,
                "crop_size": list(self.rerank_crop_size),
                "learning_rate": self.rerank_learning_rate, "model": self.rerank_model,
                "model_overrides": dict(self.rerank_model_overrides or {}),
                "eval_images": self.rerank_eval_images}


def run_search(project_dir, argv=None, objective_fn=None, rerank_fn=None):
    """Runs the gin-configured DPC search in ``project_dir`` (resumes a previous one).

    As a worker: runs trials until the chief says stop. As the chief or alone: also
    writes the leaderboard with its pictures and TensorBoard summaries, the operative
    config, the random baseline (``random_baseline > 0``; the progress picture is then
    drawn again with the random median) and (``rerank_top_k > 0``) re-ranks.

    Args:
      project_dir: the search's folder.
      argv: the command line to save (default ``sys.argv``).
      objective_fn: overrides the configured objective (tests, custom proxies).
      rerank_fn: overrides the default whole-model fine-tuning.

    Returns:
      dict with ``role`` and, on the chief / alone, ``leaderboard`` (rows), ``rerank``
      (the rerank summary or None) and ``oracle``.
    """
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.train import experiment

    cfg, data = DPCSearchConfig(), experiment.DataConfig()
    this_role = role()
    if objective_fn is None and cfg.objective not in OBJECTIVES:
        make_objective(cfg.objective)  # raises the error listing the known objectives
    space = DPCSearchSpace(cfg.num_branches, cfg.rates, cfg.grids)
    oracle = make_oracle(
        cfg.oracle, space,
        options={"explore": cfg.explore, "top_k": cfg.top_k,
                 "population_size": cfg.population_size, "sample_size": cfg.sample_size},
        max_trials=cfg.max_trials, seed=cfg.seed, early_stopping=cfg.early_stopping,
        early_stopping_min_trials=cfg.early_stopping_min_trials,
        max_retries_per_trial=cfg.max_retries_per_trial,
        max_consecutive_failed_trials=cfg.max_consecutive_failed_trials)
    os.makedirs(project_dir, exist_ok=True)
    if this_role != "worker":
        experiment.write_run_files(project_dir, argv)
    if objective_fn is None:
        objective_fn = make_objective(cfg.objective, space=space, project_dir=project_dir,
                                      data=data, cache_dir=cfg.cache_dir)
    tuner = DPCTuner(oracle, objective_fn, project_dir, verbose=cfg.verbose,
                     leaderboard_every_s=cfg.leaderboard_every_s,
                     save_top_k=cfg.save_top_k)
    tuner.search()
    if this_role == "worker":
        return {"role": this_role}

    rows = write_leaderboard(oracle, project_dir, cfg.save_top_k, final=True)
    experiment.write_operative_config(project_dir)
    baseline = None
    if cfg.random_baseline > 0:
        baseline = random_baseline(rows, space, objective_fn, project_dir,
                                   cfg.random_baseline, cfg.seed, cfg.verbose)
        from nasseg_tf.search import plots
        plots.plot_dpc_search(rows, os.path.join(project_dir, PROGRESS_PNG),
                              baseline)  # again, with the random median
    summary = None
    if cfg.rerank_top_k > 0 and rows:
        if rerank_fn is None:
            info, train, val = data.resolve(project_dir)
            if not val:
                raise ValueError("re-ranking needs validation data: set Data.eval_pattern "
                                 "(or DPCSearch.rerank_top_k = 0)")
            rerank_fn = finetune_rerank_fn(
                info, train, val, cfg.rerank_steps, cfg.rerank_batch_size,
                cfg.rerank_crop_size, cfg.rerank_learning_rate, cfg.rerank_model,
                cfg.rerank_model_overrides, cfg.rerank_eval_images, cfg.seed)
        summary = rerank(rows, rerank_fn, project_dir, cfg.rerank_top_k,
                         settings=cfg.rerank_settings(), verbose=cfg.verbose)
    return {"role": this_role, "leaderboard": rows, "rerank": summary, "oracle": oracle,
            "baseline": baseline}
