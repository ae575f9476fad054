"""DPC search oracles, the tuner's leaderboard and re-ranking, Spearman's rho."""

import json

import numpy as np
import pytest

from dpc_helpers import SCORE, SPACE, new_oracle
from nasseg_tf.search.dpc.objectives import SyntheticObjectiveConfig, synthetic_objective
from nasseg_tf.search.dpc.oracles import (ORACLES, DPCParetoOracle,
                                         DPCRandomSearchOracle,
                                         RegularizedEvolutionOracle, TrialStatus,
                                         make_oracle)
from nasseg_tf.search_space.dpc import DPCSearchSpace




def _finish(oracle, trial, score=None, status=TrialStatus.COMPLETED):
    if status == TrialStatus.COMPLETED:
        if score is None:
            score = synthetic_objective(oracle.space, SyntheticObjectiveConfig(seed=3)).score(
                oracle.trial_cell(trial))
        oracle.update_trial(trial.trial_id, {"val_miou": score})
    trial.status = status
    oracle.end_trial(trial)


def _drive(oracle, count, tuner_id="tuner0", on_create=None):
    """Creates and completes ``count`` trials one after the other."""
    trials = []
    for _ in range(count):
        if on_create is not None:
            on_create(oracle)
        trial = oracle.create_trial(tuner_id)
        if trial.status != TrialStatus.RUNNING:
            break
        _finish(oracle, trial)
        trials.append(trial)
    return trials


def _keys(oracle):
    return [oracle.trial_cell(i).key() for i in sorted(oracle.trials)]


def _distance(a, b):
    ea, eb = SPACE.encode(a), SPACE.encode(b)
    return sum(ea[k] != eb[k] for k in ea)


def test_random_oracle_never_repeats_a_cell_running_completed_or_failed(tmp_path):
    oracle = new_oracle(tmp_path, options={"explore": 0.1, "top_k": 2}, max_trials=300,
                     max_consecutive_failed_trials=1000)
    running = []
    for i in range(300):
        trial = oracle.create_trial(f"tuner{i}")  # a tuner's running trial blocks it
        assert trial.status == TrialStatus.RUNNING
        if i % 7 == 0:
            running.append(trial)  # stays running while others are created
        elif i % 11 == 0:
            _finish(oracle, trial, status=TrialStatus.FAILED)
        else:
            _finish(oracle, trial)
        if len(running) > 2:
            _finish(oracle, running.pop(0))
    keys = _keys(oracle)
    assert len(keys) == 300 and len(set(keys)) == 300
    assert oracle.create_trial("tuner9").status == TrialStatus.STOPPED


def test_exhausted_small_space_stops_the_search(tmp_path):
    space = DPCSearchSpace(num_branches=2, rates=(1,), grids=(1,))  # 2!·3² = 18 cells
    oracle = new_oracle(tmp_path, space=space, options={"explore": 0.0}, max_trials=50,
                     max_attempts=1)  # collisions soon fall back to enumeration
    trials = _drive(oracle, 50)
    assert len(trials) == space.size() == 18
    assert len(set(_keys(oracle))) == 18
    assert oracle.create_trial("tuner0").status == TrialStatus.STOPPED
    assert {o["kind"] for o in oracle.origins.values()} >= {"mutation", "enumeration"}


@pytest.mark.parametrize("explore", [0.0, 0.25, 1.0])
def test_explore_mixes_uniform_samples_and_mutations_of_the_top_k(tmp_path, explore):
    oracle = new_oracle(tmp_path, options={"explore": explore, "top_k": 3}, max_trials=200,
                     seed=7)
    tops = {}

    def remember_top_k(o):
        tops[len(o.trials)] = {t.trial_id for t in o.completed_trials()[:3]}

    _drive(oracle, 200, on_create=remember_top_k)
    later = [oracle.origins[t] for t in sorted(oracle.trials)[1:]]  # trial 0: nothing done
    uniform = sum(o["kind"] == "uniform" for o in later)
    if explore == 0.0:
        assert uniform == 0
    elif explore == 1.0:
        assert uniform == len(later)
    else:  # binomial(199, 0.25): mean 49.75, sd 6.1
        assert 30 <= uniform <= 70
    for number, trial_id in enumerate(sorted(oracle.trials)):
        origin = oracle.origins[trial_id]
        if origin["kind"] == "mutation":
            assert origin["parent"] in tops[number]
            assert _distance(oracle.trial_cell(trial_id),
                             oracle.trial_cell(origin["parent"])) == 1


def test_state_round_trip_resumes_the_same_sequence(tmp_path):
    options = {"explore": 0.3, "top_k": 4}
    reference = new_oracle(tmp_path, project="ref", options=options, max_trials=30, seed=5)
    _drive(reference, 30)

    first = new_oracle(tmp_path, project="run", options=options, max_trials=30, seed=5)
    _drive(first, 12)
    state = json.loads(json.dumps(first.get_state()))  # what oracle.json holds
    assert state["dpc"]["space"] == SPACE.config() and state["dpc"]["seed"] == 5

    resumed = new_oracle(tmp_path, project="run", options=options, max_trials=30, seed=99)
    resumed.reload()  # trial_*/trial.json + oracle.json -> set_state
    assert resumed.dpc_seed == 5 and resumed.origins == first.origins
    _drive(resumed, 30)
    assert len(resumed.trials) == 30
    assert _keys(resumed) == _keys(reference)
    assert resumed.origins == reference.origins


def test_resuming_with_another_space_or_oracle_is_an_error(tmp_path):
    oracle = new_oracle(tmp_path, max_trials=5)
    _drive(oracle, 2)
    other = new_oracle(tmp_path, space=DPCSearchSpace(num_branches=4), max_trials=5)
    with pytest.raises(ValueError, match="another DPC space"):
        other.reload()
    evolution = new_oracle(tmp_path, name="evolution", max_trials=5,
                        options={"population_size": 2, "sample_size": 1})
    with pytest.raises(ValueError, match="'random' oracle"):
        evolution.reload()
    scored = new_oracle(tmp_path, max_trials=5, objective="score")
    with pytest.raises(ValueError, match="ranked by 'val_miou'.*now ranks by 'score'"):
        scored.reload()
    with pytest.raises(ValueError, match="unknown DPC oracle objective 'miou'"):
        new_oracle(tmp_path, max_trials=5, objective="miou")


def test_resuming_a_pareto_search_with_another_cost_is_an_error(tmp_path):
    pareto = new_oracle(tmp_path, name="pareto", max_trials=5,
                        options={"pareto_cost": "params"})
    for trial in _drive(pareto, 2):
        pareto.update_trial(trial.trial_id, {"params": 1.0})
    stored = json.loads(json.dumps(pareto.get_state()))["dpc"]
    assert stored["options"]["pareto_cost"] == "params"
    other = new_oracle(tmp_path, name="pareto", max_trials=5,
                       options={"pareto_cost": "madds"})
    with pytest.raises(ValueError, match="pareto_cost = 'params'.*asks for 'madds'"):
        other.check_project(str(tmp_path / "p"))  # before anything is written
    with pytest.raises(ValueError, match="pareto_cost = 'params'"):
        other.reload()
    same = new_oracle(tmp_path, name="pareto", max_trials=5,
                      options={"pareto_cost": "params", "explore": 0.9})
    same.reload()  # other options may change
    assert len(same.trials) == 2 and same.explore == 0.9


def test_restarted_oracle_keeps_running_trials_with_their_tuners(tmp_path):
    oracle = new_oracle(tmp_path, max_trials=10)
    done = oracle.create_trial("tuner0")
    _finish(oracle, done)
    running0 = oracle.create_trial("tuner0")
    running1 = oracle.create_trial("tuner1")

    restarted = new_oracle(tmp_path, max_trials=10)
    restarted.reload()
    assert not restarted._retry_queue  # nothing handed to another tuner
    # A restarted worker with the same id gets its trial back ...
    assert restarted.create_trial("tuner0").trial_id == running0.trial_id
    # ... a worker that kept running reports its trial once, a repeat is ignored.
    _finish(restarted, running1)
    _finish(restarted, running1)
    assert restarted.end_order.count(running1.trial_id) == 1
    new = restarted.create_trial("tuner1")
    assert new.trial_id not in (done.trial_id, running0.trial_id, running1.trial_id)
    assert len(set(_keys(restarted))) == len(restarted.trials) == 4
    assert not restarted.finished()


def test_median_rule_stops_a_trial_below_the_median_at_the_same_step(tmp_path):
    oracle = new_oracle(tmp_path, max_trials=10, early_stopping_min_trials=3)
    for curve in ([0.1, 0.5], [0.2, 0.6], [0.3, 0.7]):
        trial = oracle.create_trial("tuner0")
        for step, value in zip((10, 20), curve):
            oracle.update_trial(trial.trial_id, {"proxy_miou": value}, step=step)
        _finish(oracle, trial, score=curve[-1])
    trial = oracle.create_trial("tuner0")
    assert oracle.update_trial(trial.trial_id, {"proxy_miou": 0.25}, step=10).status \
        == TrialStatus.RUNNING  # median at step 10: 0.2
    reply = oracle.update_trial(trial.trial_id, {"proxy_miou": 0.55}, step=20)
    assert reply.status == TrialStatus.STOPPED  # median at step 20: 0.6
    assert oracle.trials[trial.trial_id].status == TrialStatus.RUNNING
    assert not oracle.should_stop(30, 0.0)  # no completed trial reached step 30
    oracle.early_stopping = False
    assert not oracle.should_stop(20, 0.0)


def test_evolution_starts_uniform_then_mutates_the_population(tmp_path):
    oracle = new_oracle(tmp_path, name="evolution", max_trials=120, seed=2,
                     options={"population_size": 10, "sample_size": 3})
    assert isinstance(oracle, RegularizedEvolutionOracle)
    populations = {}

    def remember_population(o):
        populations[len(o.trials)] = {t.trial_id for t in o.population()}

    _drive(oracle, 120, on_create=remember_population)
    ids = sorted(oracle.trials)
    assert [oracle.origins[i]["kind"] for i in ids[:10]] == ["initial"] * 10
    for number, trial_id in enumerate(ids[10:], 10):
        origin = oracle.origins[trial_id]
        assert origin["kind"] == "mutation"
        assert origin["parent"] in populations[number]
        assert _distance(oracle.trial_cell(trial_id),
                         oracle.trial_cell(origin["parent"])) == 1
    # Aging: the population is the last P completed trials.
    assert [t.trial_id for t in oracle.population()] == oracle.end_order[-10:]
    scores = [oracle.trials[i].score for i in ids]
    assert np.mean(scores[-30:]) > np.mean(scores[:10]) + 0.05
    assert len(set(_keys(oracle))) == 120


def _fake_madds(cell):
    """A deterministic stand-in cost: pooling cheap, 1x1 conv mid, separable dear."""
    return float(sum(1 if b.op == "pyramid_pooling" else 5 if b.kernel == 1 else 9
                     for b in cell.branches) + sum(b.input for b in cell.branches))


def test_pareto_oracle_mutates_members_of_the_non_dominated_front(tmp_path):
    oracle = new_oracle(tmp_path, name="pareto", max_trials=50, seed=4,
                        options={"explore": 0.2, "pareto_cost": "madds", "top_k": 99})
    assert isinstance(oracle, DPCParetoOracle) and oracle.pareto_cost == "madds"
    fronts = {}
    for number in range(50):
        fronts[number] = {t.trial_id for t in oracle.front()}
        trial = oracle.create_trial("tuner0")
        cell = oracle.trial_cell(trial)
        oracle.update_trial(trial.trial_id, {"val_miou": SCORE(cell),
                                             "madds": _fake_madds(cell)})
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
    mutations = 0
    for number, trial_id in enumerate(sorted(oracle.trials)):
        origin = oracle.origins[trial_id]
        if origin["kind"] == "mutation":
            mutations += 1
            assert origin["parent"] in fronts[number]  # a front member then
            assert _distance(oracle.trial_cell(trial_id),
                             oracle.trial_cell(origin["parent"])) == 1
        else:
            assert origin["kind"] == "uniform"
    assert 25 <= mutations <= 49  # explore 0.2: binomial(49, 0.8), mean 39, sd 2.8
    # The front is exactly the non-dominated completed trials (brute force).
    points = {t.trial_id: (t.score, t.metrics.get_last_value("madds"))
              for t in oracle.completed_trials()}
    dominated = {i for i, (m, c) in points.items()
                 if any(m2 >= m and c2 <= c and (m2, c2) != (m, c)
                        for m2, c2 in points.values())}
    front = [t.trial_id for t in oracle.front()]
    assert set(front) == set(points) - dominated and len(front) >= 2
    assert [points[i][1] for i in front] == sorted(points[i][1] for i in front)
    assert json.loads(json.dumps(oracle.get_state()))["dpc"]["options"] == {
        "explore": 0.2, "pareto_cost": "madds"}


def test_pareto_oracle_rejects_an_unknown_cost():
    with pytest.raises(ValueError, match="unknown pareto_cost 'flops'; known costs: "
                                         "madds, params, latency_ms"):
        make_oracle("pareto", SPACE, options={"pareto_cost": "flops"})


def test_unknown_oracle_lists_the_known_ones():
    assert set(ORACLES) == {"random", "evolution", "pareto"}
    with pytest.raises(ValueError, match="unknown DPC oracle 'bayes'; known oracles: "
                                         "evolution, pareto, random"):
        make_oracle("bayes", SPACE)
    assert isinstance(make_oracle("random", SPACE, options={"population_size": 3}),
                      DPCRandomSearchOracle)  # other strategies' options are ignored
    with pytest.raises(ValueError, match="explore"):
        make_oracle("random", SPACE, options={"explore": 1.5})
