"""DPC search oracles, the tuner's leaderboard and re-ranking, Spearman's rho."""

import csv
import json
import math
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nasseg_tf.search import dpc_tuner
from nasseg_tf.search.dpc_oracle import (ORACLES, DPCRandomSearchOracle,
                                         RegularizedEvolutionOracle, TrialStatus,
                                         make_oracle)
from nasseg_tf.search_space.dpc import DPCSearchSpace, load_dpc_cell
from nasseg_tf.train import experiment

# KerasTuner's oracle lock calls threading.currentThread().getName().
pytestmark = pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning",
                                        "ignore:getName:DeprecationWarning")

SPACE = DPCSearchSpace()
SCORE = dpc_tuner.synthetic_objective(SPACE, seed=3).score


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(var, raising=False)


def _oracle(tmp_path, name="random", project="p", space=SPACE, **kwargs):
    oracle = make_oracle(name, space, options=kwargs.pop("options", {}), **kwargs)
    oracle._set_project_dir(str(tmp_path), project)  # what a tuner does
    return oracle


def _finish(oracle, trial, score=None, status=TrialStatus.COMPLETED):
    if status == TrialStatus.COMPLETED:
        if score is None:
            score = dpc_tuner.synthetic_objective(oracle.space, seed=3).score(
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
    oracle = _oracle(tmp_path, options={"explore": 0.1, "top_k": 2}, max_trials=300,
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
    oracle = _oracle(tmp_path, space=space, options={"explore": 0.0}, max_trials=50,
                     max_attempts=1)  # collisions soon fall back to enumeration
    trials = _drive(oracle, 50)
    assert len(trials) == space.size() == 18
    assert len(set(_keys(oracle))) == 18
    assert oracle.create_trial("tuner0").status == TrialStatus.STOPPED
    assert {o["kind"] for o in oracle.origins.values()} >= {"mutation", "enumeration"}


@pytest.mark.parametrize("explore", [0.0, 0.25, 1.0])
def test_explore_mixes_uniform_samples_and_mutations_of_the_top_k(tmp_path, explore):
    oracle = _oracle(tmp_path, options={"explore": explore, "top_k": 3}, max_trials=200,
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
    reference = _oracle(tmp_path, project="ref", options=options, max_trials=30, seed=5)
    _drive(reference, 30)

    first = _oracle(tmp_path, project="run", options=options, max_trials=30, seed=5)
    _drive(first, 12)
    state = json.loads(json.dumps(first.get_state()))  # what oracle.json holds
    assert state["dpc"]["space"] == SPACE.config() and state["dpc"]["seed"] == 5

    resumed = _oracle(tmp_path, project="run", options=options, max_trials=30, seed=99)
    resumed.reload()  # trial_*/trial.json + oracle.json -> set_state
    assert resumed.dpc_seed == 5 and resumed.origins == first.origins
    _drive(resumed, 30)
    assert len(resumed.trials) == 30
    assert _keys(resumed) == _keys(reference)
    assert resumed.origins == reference.origins


def test_resuming_with_another_space_or_oracle_is_an_error(tmp_path):
    oracle = _oracle(tmp_path, max_trials=5)
    _drive(oracle, 2)
    other = _oracle(tmp_path, space=DPCSearchSpace(num_branches=4), max_trials=5)
    with pytest.raises(ValueError, match="another DPC space"):
        other.reload()
    evolution = _oracle(tmp_path, name="evolution", max_trials=5,
                        options={"population_size": 2, "sample_size": 1})
    with pytest.raises(ValueError, match="'random' oracle"):
        evolution.reload()


def test_restarted_oracle_keeps_running_trials_with_their_tuners(tmp_path):
    oracle = _oracle(tmp_path, max_trials=10)
    done = oracle.create_trial("tuner0")
    _finish(oracle, done)
    running0 = oracle.create_trial("tuner0")
    running1 = oracle.create_trial("tuner1")

    restarted = _oracle(tmp_path, max_trials=10)
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
    oracle = _oracle(tmp_path, max_trials=10, early_stopping_min_trials=3)
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
    oracle = _oracle(tmp_path, name="evolution", max_trials=120, seed=2,
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


def test_unknown_oracle_lists_the_known_ones():
    assert set(ORACLES) == {"random", "evolution"}
    with pytest.raises(ValueError, match="unknown DPC oracle 'bayes'; known oracles: "
                                         "evolution, random"):
        make_oracle("bayes", SPACE)
    assert isinstance(make_oracle("random", SPACE, options={"population_size": 3}),
                      DPCRandomSearchOracle)  # other strategies' options are ignored
    with pytest.raises(ValueError, match="explore"):
        make_oracle("random", SPACE, options={"explore": 1.5})


# --------------------------------------------------------------------------------------
# Spearman.


def test_average_ranks_share_ties():
    np.testing.assert_allclose(dpc_tuner.average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


def test_spearman_hand_example_with_ties():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5) = 3/sqrt(10)
    assert dpc_tuner.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(
        3 / math.sqrt(10))
    assert dpc_tuner.spearman([1, 2, 3], [9, 5, 1]) == pytest.approx(-1.0)
    assert math.isnan(dpc_tuner.spearman([1, 1, 1], [1, 2, 3]))
    x = np.random.default_rng(0).permutation(20)
    y = np.random.default_rng(1).permutation(20)
    d2 = np.sum((x - y) ** 2.0)  # no ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    assert dpc_tuner.spearman(x, y) == pytest.approx(1 - 6 * d2 / (20 * (20 ** 2 - 1)))


# --------------------------------------------------------------------------------------
# Tuner, leaderboard, re-ranking.


def test_tuner_writes_trials_leaderboard_top_cells_and_rerank(tmp_path):
    project = str(tmp_path / "search")
    objective = dpc_tuner.synthetic_objective(SPACE, seed=3, steps=40, eval_every=10)
    oracle = _oracle(tmp_path, options={"explore": 0.5, "top_k": 3}, max_trials=14,
                     early_stopping_min_trials=3)
    tuner = dpc_tuner.DPCTuner(oracle, objective, project, verbose=False,
                               leaderboard_every_s=0, save_top_k=4)
    tuner.search()
    rows = dpc_tuner.write_leaderboard(oracle, project, top_k=4)

    assert len(rows) == 14 and [r["rank"] for r in rows] == list(range(1, 15))
    scores = [r["val_miou"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert any(r["stopped_early"] for r in rows)  # the median rule fired
    for row in rows:
        trial_dir = os.path.join(project, f"trial_{row['trial_id']}")
        saved = load_dpc_cell(os.path.join(trial_dir, "cell.json"))
        assert saved.to_config() == row["cell"]
        with open(os.path.join(trial_dir, "runs.jsonl"), encoding="utf-8") as f:
            assert len(f.readlines()) == 1
        if not row["stopped_early"]:
            assert row["steps"] == 40
            assert row["val_miou"] == pytest.approx(
                SCORE(load_dpc_cell(row["cell"])))

    with open(os.path.join(project, "leaderboard.csv"), encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == dpc_tuner.LEADERBOARD_COLUMNS
    assert [r["trial_id"] for r in table] == [r["trial_id"] for r in rows]
    assert json.loads(table[0]["cell"]) == rows[0]["cell"]
    with open(os.path.join(project, "leaderboard.json"), encoding="utf-8") as f:
        board = json.load(f)
    assert board["num_completed"] == 14 and board["entries"] == rows
    assert sorted(os.listdir(os.path.join(project, "top_cells"))) == [
        f"top_0{i}.json" for i in range(1, 5)]
    best = load_dpc_cell(os.path.join(project, "best_cell.json"))
    assert best.to_config() == rows[0]["cell"]
    assert not [f for f in os.listdir(project) if ".tmp-" in f]
    # Periodic writes stay cheap: pictures and TensorBoard only in the final write.
    assert not {"best_cell.png", "search_progress.png", "tensorboard"} & set(
        os.listdir(project))

    # Re-ranking with an injected trainer: scores, ranks, Spearman, resumable.
    def fake_finetune(cell, work_dir):
        assert os.path.isdir(work_dir)
        return {"miou": 1.0 - SCORE(cell) if cell.branches[0].op == "conv"
                else SCORE(cell)}

    summary = dpc_tuner.rerank(rows, fake_finetune, project, top_k=5,
                               settings={"steps": 3}, verbose=False)
    with open(os.path.join(project, "rerank.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(summary)) and saved["complete"]
    entries = saved["entries"]
    assert [e["trial_id"] for e in entries] == [r["trial_id"] for r in rows[:5]]
    assert saved["spearman"] == pytest.approx(dpc_tuner.spearman(
        [e["proxy_miou"] for e in entries], [e["rerank_miou"] for e in entries]))
    assert sorted(e["rerank_rank"] for e in entries) == [1, 2, 3, 4, 5]
    assert saved["best"]["rerank_rank"] == 1
    assert load_dpc_cell(os.path.join(project, "rerank_best_cell.json")).to_config() \
        == saved["best"]["cell"]

    def must_not_run(cell, work_dir):
        raise AssertionError("already re-ranked")

    again = dpc_tuner.rerank(rows, must_not_run, project, top_k=5, settings={"steps": 3},
                             verbose=False)
    assert again["entries"] == entries


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(ValueError, match="known objectives: proxy, synthetic"):
        dpc_tuner.make_objective("oracle_score")


def test_random_baseline_scores_fresh_cells_once_and_resumes(tmp_path):
    space = DPCSearchSpace(num_branches=2)
    searched = [space.sample(np.random.default_rng(i)) for i in range(3)]
    rows = [{"cell": c.to_config(), "val_miou": 0.5 - 0.1 * i}
            for i, c in enumerate(searched)]
    calls = []

    def objective(cell, trial, should_stop):
        assert trial is None and should_stop is None  # full budget, no early stopping
        calls.append(cell)
        return {"miou": 0.1 * len(calls), "steps": 7}

    out = dpc_tuner.random_baseline(rows, space, objective, str(tmp_path), 4, seed=1, verbose=False)
    assert len(calls) == 4 and len({c.key() for c in calls}) == 4
    assert not {c.key() for c in calls} & {c.key() for c in searched}
    assert out["median_random_miou"] == pytest.approx(0.25)
    assert out["best_searched_miou"] == 0.5 and out["best_beats_median"]
    again = dpc_tuner.random_baseline(rows, space, objective, str(tmp_path), 4, seed=1, verbose=False)
    assert len(calls) == 4 and again == out  # resumed from random_baseline.json


def _events(folder):
    """{tag: [(step, value), ...]} of the one event file in ``folder``."""
    files = [f for f in os.listdir(folder) if f.startswith("events.out.tfevents.")]
    assert len(files) == 1, files
    tags = {}
    for record in tf.data.TFRecordDataset(os.path.join(folder, files[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tensor = tf.make_ndarray(value.tensor)
            if tensor.dtype.kind in "fiu":
                tensor = float(tensor) if tensor.ndim == 0 else tensor
            tags.setdefault(value.tag, []).append((event.step, tensor))
    return tags


def _check_png(path):
    assert os.path.getsize(path) > 1000
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and 300 <= min(image.size) <= max(image.size) < 4000


def test_search_run_leaves_pictures_and_tensorboard_events(tmp_path):
    project = str(tmp_path / "search")
    objective = dpc_tuner.synthetic_objective(SPACE, seed=3, steps=40, eval_every=10)
    bindings = ["DPCSearch.max_trials = 9", "DPCSearch.verbose = False",
                "DPCSearch.early_stopping_min_trials = 3", "DPCSearch.random_baseline = 3",
                "DPCSearch.leaderboard_every_s = 0", "DPCSearch.save_top_k = 3"]
    try:
        experiment.parse_gin([], bindings)
        out = dpc_tuner.run_search(project, argv=["test"], objective_fn=objective)
        files = set(os.listdir(project))
        rows = out["leaderboard"]
        assert len(rows) == 9 and out["baseline"]["complete"]
        for name in ("best_cell.png", "search_progress.png"):
            assert name in files
            _check_png(os.path.join(project, name))
        assert not [f for f in files if ".tmp-" in f]

        folder = os.path.join(project, "tensorboard")
        tags = _events(folder)
        numbers = sorted(int(r["trial_id"]) for r in rows)
        by_trial = {int(r["trial_id"]): r["val_miou"] for r in rows}
        assert [s for s, _ in tags["dpc/val_miou"]] == numbers
        for step, value in tags["dpc/val_miou"]:
            assert value == pytest.approx(by_trial[step])
        best = [v for _, v in tags["dpc/best_so_far"]]
        assert best == sorted(best) and best[-1] == pytest.approx(rows[0]["val_miou"])
        assert [s for s, _ in tags["dpc/best_cell"]] == [numbers[-1]]
        width, height, png = tags["dpc/best_cell"][0][1]  # image summary: size, PNG
        assert png.startswith(b"\x89PNG") and int(width) > int(height) > 100
        assert "dpc/best_cell_json" in tags

        # A rerun of the finished search runs no trial and leaves one event file with
        # the same history (idempotent).
        again = dpc_tuner.run_search(project, argv=["test"], objective_fn=objective)
        assert again["leaderboard"] == rows
        assert _events(folder)["dpc/val_miou"] == tags["dpc/val_miou"]
    finally:
        with gin.unlock_config():
            gin.clear_config()
