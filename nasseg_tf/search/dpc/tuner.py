"""The DPC search's KerasTuner tuner and its chief–worker roles (SPEC §3.3).

:class:`DPCTuner` is a ``keras_tuner`` ``BaseTuner`` (the objective is not a Keras
``fit``): ``run_trial`` decodes the trial's cell, writes ``trial_<id>/cell.json`` (the
official DPC JSON), calls an injectable ``objective_fn(cell, trial, should_stop) ->
dict(miou=..., steps=..., stopped_early=..., seconds=..., history=[(step, miou), ...])``
(:mod:`nasseg_tf.search.dpc.objectives`) and reports ``val_miou``, the raw val mIoU,
and, when the objective returns one, ``score`` (the mIoU scalarised with the cell's
cost). The oracle ranks the trials by the metric it was built with (its ``objective``:
``score`` in a cost-scored search).
``should_stop(step, miou)`` sends the curve point to the oracle, which applies the
median stopping rule (:meth:`~nasseg_tf.search.dpc.oracles.DPCOracle.should_stop`).
This is the only module that touches KerasTuner's internals (through
:mod:`nasseg_tf.internals`).

Distribution is KerasTuner's: the same command runs as the chief (``KERASTUNER_TUNER_ID
= chief``: serves the oracle over gRPC at ``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT``)
or a worker (any other id: asks the chief for trials and runs them), or alone when the
variables are unset. Restarts:

* a killed chief, started again with the same command, reloads ``oracle.json`` and the
  trial files and goes on; no completed trial is lost or run again, and a trial that
  was running stays with its worker (see :mod:`~nasseg_tf.search.dpc.oracles`);
* workers survive a chief restart: a call that fails because the chief is gone is
  retried until it is back (``reconnect_seconds``, 1 h);
* a worker restarted with its old ``KERASTUNER_TUNER_ID`` is handed its unfinished
  trial again. A worker that died for good leaves its trial running: the chief then
  waits for it, so start a worker with that id again to finish the search;
* a worker started after the chief has finished waits for a chief (KerasTuner's
  client timeout) — start workers while the search runs.
"""

import json
import os
import time

from keras_tuner.engine.base_tuner import BaseTuner
from keras_tuner.engine.trial import TrialStatus

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_json, atomic_write_text
from nasseg_tf.internals import keras_tuner_grpc, oracle_state_file, tuner_state_file
from nasseg_tf.search.dpc.leaderboard import write_leaderboard
from nasseg_tf.search.dpc.oracles import CURVE_METRIC, OBJECTIVE, SCORE

_ENV_IP, _ENV_PORT, _ENV_ID = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                               "KERASTUNER_TUNER_ID")


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

    protos, oracle_chief = keras_tuner_grpc()
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
      oracle: a :class:`~nasseg_tf.search.dpc.oracles.DPCOracle`.
      objective_fn: ``objective_fn(cell, trial, should_stop) -> dict`` with ``miou``
        (required), ``steps``, ``stopped_early``, ``seconds``, ``history``.
      project_dir: the search's folder (KerasTuner's ``directory/project_name``).
      verbose: print a line per trial.
      reconnect_seconds: how long a worker retries calls while the chief is away.
      leaderboard_every_s: minimum seconds between leaderboard rewrites during the
        search (the chief's, after each completed trial); 0 = after every trial.
      save_top_k: top cells written as JSON files.
      cost_fn: optional ``cost_fn(cell) -> {name: value}``
        (:func:`nasseg_tf.search.dpc.costs.cost_fn`): the cell's costs, reported with
        ``val_miou`` as metrics of the trial (the Pareto oracle reads them).
    """

    def __init__(self, oracle, objective_fn, project_dir, verbose=True,
                 reconnect_seconds=3600, leaderboard_every_s=10.0, save_top_k=10,
                 cost_fn=None):
        self.space = oracle.space
        self.objective_fn = objective_fn
        self.cost_fn = cost_fn
        self.verbose = bool(verbose)
        self.leaderboard_every_s = float(leaderboard_every_s)
        self.save_top_k = int(save_top_k)
        self._last_leaderboard = 0.0
        project_dir = fileio.abspath(project_dir)
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
        state_file = oracle_state_file(self.oracle)
        if not self._is_worker() and fileio.exists(state_file):
            self.oracle.reload()

    def save(self):
        """KerasTuner's save, but ``tuner0.json`` is written atomically (temporary file
        + rename), like the oracle's files: KerasTuner rewrites it in place, so a kill
        mid-write leaves a garbled file (and ``ram://`` keeps the old bytes after a
        shorter rewrite)."""
        if not self._is_worker():
            self.oracle.save()
        atomic_write_json(tuner_state_file(self), self.get_state())

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
        # Appended (gs:// rewrites the object): a log for people, read by nothing.
        with fileio.open_file(os.path.join(trial_dir, "runs.jsonl"), "a") as f:
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
        score = result.get("score")  # a scalarised objective's
        ranked = self.oracle.objective.name
        if ranked == SCORE and score is None:
            raise ValueError(f"the search ranks by {SCORE!r} but the objective returned "
                             f"none: {sorted(result)}")
        metrics = {OBJECTIVE: float(result["miou"]), "steps": float(steps),
                   "stopped_early": float(bool(result.get("stopped_early", False))),
                   "seconds": float(result.get("seconds", seconds))}
        if score is not None:
            metrics[SCORE] = float(score)
        if self.cost_fn is not None:  # after the objective: a timing runs alone
            metrics.update({k: float(v) for k, v in self.cost_fn(cell).items()})
        extra = {k: v for k, v in result.items()
                 if k not in ("miou", "steps", "stopped_early", "seconds", "history",
                              "cell")}
        atomic_write_text(os.path.join(trial_dir, "result.json"), json.dumps({
            "trial_id": trial.trial_id, "tuner_id": self.tuner_id, "metrics": metrics,
            "history": history, "cell": cell.to_config(), "describe": cell.describe(),
            "objective": extra}, indent=2, default=str) + "\n")
        cost = (f", {metrics['madds'] / 1e9:.2f}B Multiply-Adds" if "madds" in metrics
                else "")
        shown = (f"{OBJECTIVE} {metrics[OBJECTIVE]:.4f}" if score is None else
                 f"{SCORE} {metrics[SCORE]:.4f} ({OBJECTIVE} {metrics[OBJECTIVE]:.4f})")
        self._log(f"[{self.tuner_id}] trial {trial.trial_id}: {shown}{cost} "
                  f"({int(steps)} steps"
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
        name = oracle.objective.name
        score = "failed" if trial.score is None else f"{name} {trial.score:.4f}"
        best_text = (f"best {best[0].score:.4f} (trial {best[0].trial_id})" if best
                     else "no completed trial yet")
        self._log(f"[search] {done}/{oracle.max_trials} trials ended; trial "
                  f"{trial.trial_id} {score}; {best_text}")
        now = time.time()
        if now - self._last_leaderboard >= self.leaderboard_every_s:
            self._last_leaderboard = now
            write_leaderboard(oracle, self.project_dir, self.save_top_k)  # no pictures
