"""KerasTuner oracles for the Dense Prediction Cell search (Chen et al. 2018, §3.3).

The oracle owns the search space and every trial (KerasTuner's design): the
hyperparameters are the space's encoding (:meth:`DPCSearchSpace.declare`), one
``branch{i}_op`` and one ``branch{i}_input`` per branch, and ``populate_space`` proposes
the next cell. Three strategies, in the :data:`ORACLES` registry:

* ``random`` — :class:`DPCRandomSearchOracle`, the paper's search: "sample uniformly,
  and also sample near the best architectures seen so far". With probability
  ``explore`` a uniform sample, otherwise a mutation (:meth:`DPCSearchSpace.mutate`: one
  branch's op or input changed) of a trial drawn uniformly from the ``top_k`` completed
  trials.
* ``pareto`` — :class:`DPCParetoOracle`, the same with the Pareto front of (val mIoU,
  cost) as the pool of parents: a cost-aware search.
* ``evolution`` — :class:`RegularizedEvolutionOracle`, aging evolution (Real et al.
  2019, Algorithm 1): the first ``population_size`` trials are uniform; after that the
  population is the last ``population_size`` completed trials (so the oldest dies when
  a new one completes), ``sample_size`` of them are drawn and the best one's mutation is
  the child.

Both never propose a cell that any existing trial already has (running, completed,
invalid or failed: cells are compared by :meth:`DPCCell.key`). A proposal that collides
is redrawn; after ``max_attempts`` collisions the oracle draws uniform samples, then (for
spaces of at most :data:`ENUMERATE_LIMIT` cells) picks from the enumerated unused cells;
when every cell of the space has been tried it answers ``STOPPED``, as it does at
``max_trials``.

Determinism and resuming. Trial ``n``'s random numbers come from
``numpy.random.default_rng([seed, n])``, and every other input of a proposal (the
trials, their scores, their end order) is part of the oracle's saved state
(``oracle.json`` and ``trial_*/trial.json``). A restarted chief therefore continues the
same sequence without repeating a cell: no generator state needs saving. The state also
keeps the space's configuration (a project cannot silently continue with another space),
the seed, and each trial's origin (``uniform``, ``mutation`` of which parent, ...).

Fault tolerance beyond KerasTuner's defaults (for a chief that is killed and restarted
while its workers keep running):

* a trial that was running when the chief died stays assigned to its tuner (KerasTuner
  would queue it for a retry, and a second worker would run it again while the first
  still does): the tuner's next report ends it, and a restarted worker with the same
  ``KERASTUNER_TUNER_ID`` is handed the same trial back;
* a second ``end_trial`` for a finished trial (a worker's retry after the chief died
  before answering) is ignored;
* ``oracle.json`` and ``trial.json`` are written atomically (temporary file + rename).

Early stopping (median stopping rule, cf. Golovin et al. 2017, "Google Vizier"): a
worker reports its proxy curve point by point with ``update_trial(trial_id,
{"proxy_miou": m}, step=s)``. The oracle answers with a trial whose status is
``STOPPED`` when ``m`` is below the median of the completed trials' ``proxy_miou`` at the
same step ``s`` (only trials that reached step ``s`` count, and at least
``early_stopping_min_trials`` of them). The decision is taken by the oracle, so it works
unchanged over KerasTuner's gRPC protocol.
"""

import os
import zlib

import keras_tuner
import numpy as np
from keras_tuner.engine.trial import Trial, TrialStatus

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_json
from nasseg_tf.internals import oracle_retry_queue, oracle_state_file, oracle_trial_dir
from nasseg_tf.search.dpc.costs import COSTS, pareto_front
from nasseg_tf.search_space.dpc import DPCSearchSpace

#: The raw val mIoU, a metric of every trial; the oracle maximises it by default.
OBJECTIVE = "val_miou"
#: A cost-scored objective's score (:class:`~nasseg_tf.search.dpc.objectives.CostScore`):
#: the metric the oracle maximises instead when the search ranks by it.
SCORE = "score"
#: The metrics an oracle may maximise (its ``objective`` argument).
RANKED_METRICS = (OBJECTIVE, SCORE)
CURVE_METRIC = "proxy_miou"
#: KerasTuner's oracle state file in the project folder.
ORACLE_STATE = "oracle.json"
ENUMERATE_LIMIT = 100_000
_ENDED = (TrialStatus.COMPLETED, TrialStatus.FAILED)


def _trial_number(trial_id):
    try:
        return int(trial_id)
    except ValueError:
        return zlib.crc32(str(trial_id).encode("utf-8"))


class DPCOracle(keras_tuner.Oracle):
    """Common base of the DPC oracles (see the module docstring).

    Subclasses implement :meth:`propose` (one candidate cell and its origin) and list
    their own constructor options in ``OPTIONS`` (used by :func:`make_oracle`).

    Args:
      space: the :class:`DPCSearchSpace` (default: the paper's).
      max_trials: total number of trials (cells) to run.
      seed: random seed; trial ``n`` draws from ``default_rng([seed, n])``.
      early_stopping: apply the median stopping rule to reported curves.
      early_stopping_min_trials: completed trials needed at a step before the rule
        stops anything there.
      max_attempts: redraws of a colliding proposal before falling back to uniform
        samples (and as many uniform draws before enumerating a small space).
      max_retries_per_trial, max_consecutive_failed_trials: KerasTuner's failure
        handling.
      objective: the metric every trial is ranked by (:data:`RANKED_METRICS`):
        :data:`OBJECTIVE`, the raw val mIoU, or :data:`SCORE`, a cost-scored
        objective's score (the trials then report both).

    A project remembers its space, oracle, objective and the ``FIXED_OPTIONS`` (options
    that give the stored results their meaning); resuming it with other ones is refused.
    """

    NAME = None
    OPTIONS = ()
    FIXED_OPTIONS = ()

    def __init__(self, space=None, max_trials=100, seed=0, early_stopping=True,
                 early_stopping_min_trials=5, max_attempts=100, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, objective=OBJECTIVE):
        self.space = space if space is not None else DPCSearchSpace()
        if max_trials is None or int(max_trials) < 1:
            raise ValueError(f"max_trials must be a positive integer, got {max_trials!r}")
        if objective not in RANKED_METRICS:
            raise ValueError(f"unknown DPC oracle objective {objective!r}; known: "
                             f"{', '.join(RANKED_METRICS)}")
        super().__init__(
            objective=keras_tuner.Objective(objective, "max"), max_trials=int(max_trials),
            hyperparameters=self.space.declare(keras_tuner.HyperParameters()),
            allow_new_entries=False, tune_new_entries=False, seed=int(seed) + 1,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.dpc_seed = int(seed)
        self.early_stopping = bool(early_stopping)
        self.early_stopping_min_trials = max(1, int(early_stopping_min_trials))
        self.max_attempts = max(1, int(max_attempts))
        self.origins = {}  # trial_id -> {"kind": ..., "parent": trial_id or None}
        self.trial_end_callback = None  # optional callable(oracle, trial): the tuner's
        self._keys = {}  # trial_id -> cell key (cache; trial values never change)
        self._orphans = {}
        self._curve_cache = (None, {})
        self.verbose = 0  # KerasTuner's print display off; the tuner prints progress

    # Cells of the trials --------------------------------------------------------------

    def trial_cell(self, trial):
        """The :class:`DPCCell` of a trial (or of a trial id)."""
        if not isinstance(trial, Trial):
            trial = self.trials[trial]
        return self.space.decode(trial.hyperparameters.values)

    def _used_keys(self):
        for trial_id, trial in self.trials.items():
            if trial_id not in self._keys and trial.hyperparameters.values:
                self._keys[trial_id] = self.trial_cell(trial).key()
        return set(self._keys.values())

    def completed_trials(self):
        """Completed trials, best first (ties: the earlier trial id first)."""
        done = [t for t in self.trials.values()
                if t.status == TrialStatus.COMPLETED and t.score is not None]
        return sorted(done, key=lambda t: (-t.score, str(t.trial_id)))

    # Proposals ------------------------------------------------------------------------

    def propose(self, rng, trial_id):
        """One candidate ``(cell, origin)``; it may collide (the caller redraws)."""
        raise NotImplementedError

    def _uniform(self, rng, used, kind):
        for _ in range(self.max_attempts):
            cell = self.space.sample(rng)
            if cell.key() not in used:
                return cell, {"kind": kind, "parent": None}
        if self.space.size() > ENUMERATE_LIMIT:
            return None, None
        free = [cell for cell in self.space.cells() if cell.key() not in used]
        if not free:
            return None, None
        return free[int(rng.integers(len(free)))], {"kind": "enumeration", "parent": None}

    def populate_space(self, trial_id):
        used = self._used_keys()
        if len(used) >= self.space.size():
            return {"status": TrialStatus.STOPPED, "values": None}
        rng = np.random.default_rng([self.dpc_seed, _trial_number(trial_id)])
        cell = origin = None
        for _ in range(self.max_attempts):
            candidate, candidate_origin = self.propose(rng, trial_id)
            if candidate.key() not in used:
                cell, origin = candidate, candidate_origin
                break
        if cell is None:
            cell, origin = self._uniform(rng, used, "fallback")
        if cell is None:  # every cell of the space has been tried
            return {"status": TrialStatus.STOPPED, "values": None}
        self.origins[str(trial_id)] = origin
        self._keys[trial_id] = cell.key()
        return {"status": TrialStatus.RUNNING, "values": self.space.encode(cell)}

    # Reports --------------------------------------------------------------------------

    def _curves_at(self, step):
        """``proxy_miou`` values of the completed trials at ``step`` (cached per end)."""
        stamp, by_step = self._curve_cache
        if stamp != len(self.end_order):
            by_step = {}
            for trial_id in self.end_order:
                trial = self.trials.get(trial_id)
                if (trial is None or trial.status != TrialStatus.COMPLETED
                        or not trial.metrics.exists(CURVE_METRIC)):
                    continue
                for obs in trial.metrics.get_history(CURVE_METRIC):
                    by_step.setdefault(int(obs.step), []).append(float(obs.mean()))
            self._curve_cache = (len(self.end_order), by_step)
        return by_step.get(int(step), [])

    def should_stop(self, step, miou):
        """The median stopping rule (see the module docstring)."""
        if not self.early_stopping:
            return False
        values = self._curves_at(step)
        return (len(values) >= self.early_stopping_min_trials
                and float(miou) < float(np.median(values)))

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        """KerasTuner's update, plus intermediate reports without the objective.

        A report of ``proxy_miou`` (a point of the proxy's validation curve) is
        recorded and answered with a copy of the trial whose status is ``STOPPED``
        when the median stopping rule says so (the stored trial keeps running).
        """
        metrics = {str(k): float(v) for k, v in dict(metrics).items()}
        if self.objective.name in metrics:
            return super().update_trial(trial_id, metrics, step=step)
        trial = self.trials[trial_id]
        for name, value in metrics.items():
            if not trial.metrics.exists(name):
                trial.metrics.register(name, direction="max")
            trial.metrics.update(name, value, step=int(step))
        self._save_trial(trial)
        if CURVE_METRIC in metrics and self.should_stop(step, metrics[CURVE_METRIC]):
            reply = Trial.from_state(trial.get_state())
            reply.status = TrialStatus.STOPPED
            return reply
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial):
        stored = self.trials.get(trial.trial_id)
        tuner_id = next((tid for tid, t in self.ongoing_trials.items()
                         if t.trial_id == trial.trial_id), None)
        if stored is not None and stored.status in _ENDED and \
                trial.trial_id in self.end_order:
            # A repeated report (a worker retrying after the chief restarted).
            if tuner_id is not None:
                self.ongoing_trials.pop(tuner_id)
                self.save()
            return
        if tuner_id is not None:
            # The tuner will ask for its next trial: the chief must wait for it.
            self.tuner_ids.add(tuner_id)
        if trial.trial_id in oracle_retry_queue(self):
            oracle_retry_queue(self).remove(trial.trial_id)
        super().end_trial(trial)
        if self.trial_end_callback is not None:
            self.trial_end_callback(self, self.trials[trial.trial_id])

    # Stopping ---------------------------------------------------------------------------

    @keras_tuner.synchronized
    def finished(self, stop_requested=False):
        """True when no trial runs or waits and no new one will be created.

        ``stop_requested``: an earlier ``create_trial`` answered STOPPED (the space is
        exhausted or max_trials reached). Tuners that asked for work and were not yet
        told to stop keep the search open (KerasTuner's ``tuner_ids``).
        """
        if self.ongoing_trials or self.tuner_ids or oracle_retry_queue(self):
            return False
        return stop_requested or len(self.trials) >= self.max_trials

    # State ------------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        state["dpc"] = {"oracle": self.NAME, "space": self.space.config(),
                        "objective": self.objective.name,
                        "seed": self.dpc_seed, "origins": self.origins,
                        "options": {k: getattr(self, k) for k in self.OPTIONS}}
        return state

    def check_stored(self, dpc):
        """Raises ValueError when a project's stored DPC state (``oracle.json``'s ``dpc``
        part; None: nothing stored) was searched with another space, oracle, objective
        or fixed option than this oracle's (see the class docstring)."""
        if dpc is None:
            return
        if dpc["space"] != self.space.config():
            raise ValueError(
                f"this project was searched in another DPC space ({dpc['space']}); "
                f"the configuration now asks for {self.space.config()}: use a new "
                f"project folder")
        if dpc.get("oracle") not in (None, self.NAME):
            raise ValueError(f"this project was searched with the {dpc['oracle']!r} "
                             f"oracle, not {self.NAME!r}: use a new project folder")
        # Older projects ranked the raw mIoU or a score under one name: not checked.
        if dpc.get("objective", self.objective.name) != self.objective.name:
            raise ValueError(
                f"this project's trials were ranked by {dpc['objective']!r}, the "
                f"configuration now ranks by {self.objective.name!r} (another "
                f"DPCSearch.objective): use a new project folder")
        stored = dpc.get("options") or {}
        for option in self.FIXED_OPTIONS:
            if option in stored and stored[option] != getattr(self, option):
                raise ValueError(
                    f"this project was searched with {option} = {stored[option]!r}, "
                    f"the configuration now asks for {getattr(self, option)!r}: use a "
                    f"new project folder")

    def check_project(self, project_dir):
        """:meth:`check_stored` on ``project_dir``'s ``oracle.json``, if there is one:
        the search calls it before it writes anything into the folder."""
        path = os.path.join(project_dir, ORACLE_STATE)
        if fileio.exists(path):
            self.check_stored(fileio.read_json(path).get("dpc"))

    def set_state(self, state):
        dpc = state.get("dpc")
        self.check_stored(dpc)
        super().set_state(state)
        if dpc is not None:
            self.dpc_seed = int(dpc["seed"])
            self.origins = dict(dpc["origins"])
        self._keys = {}
        self._orphans = dict(self.ongoing_trials)

    def reload(self):
        """KerasTuner's reload, keeping running trials with their tuners (module doc)."""
        super().reload()
        for tuner_id, trial in self._orphans.items():
            if trial.trial_id in oracle_retry_queue(self):
                oracle_retry_queue(self).remove(trial.trial_id)
            stored = self.trials[trial.trial_id]
            if stored.status in _ENDED:
                # trial.json was saved as ended, oracle.json not yet: finish the books.
                if trial.trial_id not in self.end_order:
                    self.end_order.append(trial.trial_id)
                continue
            self.ongoing_trials[tuner_id] = stored
        self._orphans = {}
        # A trial saved by create_trial just before a crash (oracle.json older): it was
        # never handed out, so any tuner may run it.
        assigned = {t.trial_id for t in self.ongoing_trials.values()}
        for trial_id in self.start_order + sorted(set(self.trials) - set(self.start_order)):
            trial = self.trials[trial_id]
            if (trial.status == TrialStatus.RUNNING and trial_id not in assigned
                    and trial_id not in oracle_retry_queue(self)):
                oracle_retry_queue(self).append(trial_id)
        self.save()

    def save(self):
        atomic_write_json(oracle_state_file(self), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(oracle_trial_dir(self, trial.trial_id), "trial.json")
        atomic_write_json(path, trial.get_state())


class DPCRandomSearchOracle(DPCOracle):
    """Random search with exploitation (the DPC paper's search; module docstring).

    Args:
      explore: probability of a uniform sample; otherwise the trial mutates one of the
        ``top_k`` best completed trials (uniform while none has completed).
      top_k: size of the pool of parents.
      **kwargs: :class:`DPCOracle` arguments.
    """

    NAME = "random"
    OPTIONS = ("explore", "top_k")

    def __init__(self, space=None, explore=0.5, top_k=10, **kwargs):
        if not 0.0 <= float(explore) <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {explore}")
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        super().__init__(space, **kwargs)
        self.explore = float(explore)
        self.top_k = int(top_k)

    def propose(self, rng, trial_id):
        explore = rng.random() < self.explore
        parents = self.completed_trials()[:self.top_k]
        if explore or not parents:
            return self.space.sample(rng), {"kind": "uniform", "parent": None}
        parent = parents[int(rng.integers(len(parents)))]
        return (self.space.mutate(self.trial_cell(parent), rng),
                {"kind": "mutation", "parent": parent.trial_id})


class RegularizedEvolutionOracle(DPCOracle):
    """Aging (regularized) evolution, Real et al. 2019, Algorithm 1.

    The first ``population_size`` trials are uniform samples. Every later trial takes
    the population — the last ``population_size`` completed trials in the order they
    ended, so a newly completed trial pushes out the oldest — draws ``sample_size`` of
    them without replacement and mutates the best (ties: the most recent). With
    parallel workers the population can be smaller than ``population_size`` for a while
    (trials created but not yet completed); while it is empty trials stay uniform.

    Args:
      population_size: P.
      sample_size: S (tournament size), at most P.
      **kwargs: :class:`DPCOracle` arguments.
    """

    NAME = "evolution"
    OPTIONS = ("population_size", "sample_size")

    def __init__(self, space=None, population_size=50, sample_size=10, **kwargs):
        if int(population_size) < 1 or not 1 <= int(sample_size) <= int(population_size):
            raise ValueError(f"need 1 <= sample_size <= population_size, got sample_size="
                             f"{sample_size}, population_size={population_size}")
        super().__init__(space, **kwargs)
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)

    def population(self):
        """The current population: the last P completed trials, oldest first."""
        done = [self.trials[i] for i in self.end_order
                if self.trials[i].status == TrialStatus.COMPLETED
                and self.trials[i].score is not None]
        return done[-self.population_size:]

    def propose(self, rng, trial_id):
        population = self.population()
        if len(self.trials) < self.population_size or not population:
            return self.space.sample(rng), {"kind": "initial", "parent": None}
        picked = rng.choice(len(population), size=min(self.sample_size, len(population)),
                            replace=False)
        best = max(picked, key=lambda i: (population[i].score, i))
        parent = population[best]
        return (self.space.mutate(self.trial_cell(parent), rng),
                {"kind": "mutation", "parent": parent.trial_id})


class DPCParetoOracle(DPCRandomSearchOracle):
    """Cost-aware random search: the parents are the Pareto front.

    The front is the set of completed trials that no other completed trial dominates
    in (val mIoU up, ``pareto_cost`` down) (:func:`pareto_front`); the cost is a
    metric every trial reports (:data:`nasseg_tf.search.dpc.costs.COSTS`: ``madds`` by
    default, exact and reproducible; ``params``; ``latency_ms``, measured on the worker's
    machine). With probability ``explore`` a uniform sample, otherwise a mutation (one
    branch's op or input changed) of a front member drawn uniformly.

    Args:
      explore: probability of a uniform sample.
      pareto_cost: the cost metric.
      **kwargs: :class:`DPCOracle` arguments.
    """

    NAME = "pareto"
    OPTIONS = ("explore", "pareto_cost")
    FIXED_OPTIONS = ("pareto_cost",)  # the front, the parents: a project keeps its cost

    def __init__(self, space=None, explore=0.5, pareto_cost="madds", **kwargs):
        if pareto_cost not in COSTS:
            raise ValueError(f"unknown pareto_cost {pareto_cost!r}; known costs: "
                             f"{', '.join(COSTS)}")
        super().__init__(space, explore=explore, top_k=1, **kwargs)
        self.pareto_cost = str(pareto_cost)

    def front(self):
        """The front's trials, cheapest first (completed trials with a cost)."""
        done = [t for t in self.completed_trials() if t.metrics.exists(self.pareto_cost)]
        points = [(t.score, t.metrics.get_last_value(self.pareto_cost)) for t in done]
        return [done[i] for i in pareto_front(points)]

    def propose(self, rng, trial_id):
        explore = rng.random() < self.explore
        parents = self.front()
        if explore or not parents:
            return self.space.sample(rng), {"kind": "uniform", "parent": None}
        parent = parents[int(rng.integers(len(parents)))]
        return (self.space.mutate(self.trial_cell(parent), rng),
                {"kind": "mutation", "parent": parent.trial_id})


ORACLES = {"random": DPCRandomSearchOracle, "evolution": RegularizedEvolutionOracle,
           "pareto": DPCParetoOracle}


def make_oracle(name, space=None, options=None, **kwargs):
    """The oracle registered as ``name``.

    Args:
      name: a key of :data:`ORACLES`.
      space: the :class:`DPCSearchSpace`.
      options: a dict of strategy options; only those the oracle lists in ``OPTIONS``
        are passed (so one configuration can carry the options of every strategy).
      **kwargs: :class:`DPCOracle` arguments (max_trials, seed, early stopping, ...).
    """
    if name not in ORACLES:
        raise ValueError(f"unknown DPC oracle {name!r}; known oracles: "
                         f"{', '.join(sorted(ORACLES))}")
    cls = ORACLES[name]
    chosen = {k: v for k, v in (options or {}).items() if k in cls.OPTIONS}
    return cls(space, **chosen, **kwargs)

