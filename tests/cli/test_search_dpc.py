"""``nasseg-search-dpc`` as users run it: alone, as a chief with workers, restarted."""

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time

import pytest

from nasseg_tf.search_space.dpc import DPCSearchSpace, load_dpc_cell

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPACE = DPCSearchSpace()
SYNTHETIC = ("DPCSearch.objective = 'synthetic'", "DPCSearch.verbose = True",
             "DPCSearch.early_stopping_min_trials = 2")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch(tmp_path):
    """Starts the CLI as a subprocess; kills the ones still running at the end."""
    started = []

    def start(project, *bindings, tuner_id=None, port=None, gin_files=(), env=None):
        extra, env = env or {}, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        for var in ("TUNER_ID", "ORACLE_IP", "ORACLE_PORT"):
            env.pop(f"KERASTUNER_{var}", None)
        env.update(extra)
        if tuner_id is not None:
            env.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                       KERASTUNER_ORACLE_PORT=str(port))
        log = open(tmp_path / f"{tuner_id or 'single'}-{len(started)}.log", "w+",
                   encoding="utf-8")
        args = [sys.executable, "-m", "nasseg_tf.cli.search_dpc",
                f"--project_dir={project}"]
        args += [f"--gin_file={f}" for f in gin_files]
        args += [f"--gin_bindings={b}" for b in bindings]
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                text=True, cwd=ROOT)
        proc.log = log
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log.close()


def _output(proc):
    proc.log.flush()
    proc.log.seek(0)
    return proc.log.read()


def _wait(procs, timeout):
    deadline = time.time() + timeout
    for proc in procs:
        try:
            proc.wait(max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{proc.args} did not finish:\n{_output(proc)[-3000:]}")
        assert proc.returncode == 0, _output(proc)[-3000:]


def _trials(project):
    """{trial_id: (status, cell key)} from the trial folders."""
    trials = {}
    for name in sorted(os.listdir(project)):
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            values = state["hyperparameters"]["values"]
            trials[state["trial_id"]] = (state["status"], SPACE.decode(values).key())
    return trials


def _runs(project, trial_id):
    with open(os.path.join(project, f"trial_{trial_id}", "runs.jsonl"),
              encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _check_complete_search(project, max_trials, workers):
    trials = _trials(project)
    assert len(trials) == max_trials
    assert {status for status, _ in trials.values()} == {"COMPLETED"}
    assert len({key for _, key in trials.values()}) == max_trials  # no duplicate cell
    for trial_id in trials:  # each trial run once, by one worker
        runs = _runs(project, trial_id)
        assert len(runs) == 1 and runs[0]["tuner_id"] in workers
    with open(os.path.join(project, "oracle.json"), encoding="utf-8") as f:
        end_order = json.load(f)["end_order"]
    assert sorted(end_order) == sorted(trials)
    with open(os.path.join(project, "leaderboard.json"), encoding="utf-8") as f:
        board = json.load(f)
    assert board["num_completed"] == max_trials
    return trials


def test_chief_and_two_workers_complete_the_search_without_duplicates(tmp_path, launch):
    project, port = str(tmp_path / "search"), _free_port()
    bindings = SYNTHETIC + ("DPCSearch.max_trials = 6", "SyntheticObjective.seconds = 0.5")
    procs = [launch(project, *bindings, tuner_id=t, port=port)
             for t in ("chief", "tuner0", "tuner1")]
    _wait(procs, timeout=150)
    _check_complete_search(project, 6, {"tuner0", "tuner1"})
    assert "6/6 trials ended" in _output(procs[0])
    assert "worker done" in _output(procs[1]) and "worker done" in _output(procs[2])


@pytest.mark.slow  # ~20 s of subprocesses; the oracle's logic: tests/search/dpc
def test_pareto_search_with_a_chief_and_two_workers(tmp_path, launch):
    project, port = str(tmp_path / "search"), _free_port()
    bindings = SYNTHETIC + ("DPCSearch.max_trials = 8", "SyntheticObjective.seconds = 0.3",
                            "DPCSearch.oracle = 'pareto'", "DPCSearch.explore = 0.25",
                            "DPCSearch.costs = ()")
    procs = [launch(project, *bindings, tuner_id=t, port=port)
             for t in ("chief", "tuner0", "tuner1")]
    _wait(procs, timeout=180)
    _check_complete_search(project, 8, {"tuner0", "tuner1"})
    with open(os.path.join(project, "leaderboard.json"), encoding="utf-8") as f:
        rows = json.load(f)["entries"]
    assert all(r["madds"] > 0 and r["params"] is None for r in rows)  # the workers count
    by_id = {r["trial_id"]: r for r in rows}
    mutations = [r for r in rows if r["origin"] == "mutation"]
    assert mutations  # explore 0.25 over 7 trials after the first
    for row in mutations:  # one-step mutations of a completed trial
        parent = SPACE.encode(load_dpc_cell(by_id[row["parent"]]["cell"]))
        child = SPACE.encode(load_dpc_cell(row["cell"]))
        assert sum(parent[k] != child[k] for k in child) == 1
    with open(os.path.join(project, "pareto_front.json"), encoding="utf-8") as f:
        front = json.load(f)["entries"]
    assert {e["trial_id"] for e in front} == {r["trial_id"] for r in rows if r["on_front"]}
    assert len(os.listdir(os.path.join(project, "front_cells"))) == len(front)
    assert os.path.getsize(os.path.join(project, "pareto_front.png")) > 1000


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_killed_chief_restarts_without_losing_or_repeating_trials(tmp_path, launch):
    project, port = str(tmp_path / "search"), _free_port()
    bindings = SYNTHETIC + ("DPCSearch.max_trials = 10", "SyntheticObjective.seconds = 1.0")
    chief = launch(project, *bindings, tuner_id="chief", port=port)
    workers = [launch(project, *bindings, tuner_id=t, port=port)
               for t in ("tuner0", "tuner1")]
    deadline = time.time() + 120
    while True:
        before = {i: key for i, (status, key) in _trials(project).items()
                  if status == "COMPLETED"} if os.path.isdir(project) else {}
        if len(before) >= 3:
            break
        assert time.time() < deadline and chief.poll() is None, _output(chief)
        time.sleep(0.1)
    chief.kill()  # SIGKILL mid-search
    chief.wait()
    assert chief.returncode == -9
    time.sleep(1.0)
    restarted = launch(project, *bindings, tuner_id="chief", port=port)
    _wait([restarted] + workers, timeout=150)

    trials = _check_complete_search(project, 10, {"tuner0", "tuner1"})
    for trial_id, key in before.items():  # completed before the kill: kept as they were
        assert trials[trial_id] == ("COMPLETED", key)
    assert "Reloading Tuner" in _output(restarted)


def test_bad_configuration_exits_with_a_clear_error(tmp_path, launch):
    project = str(tmp_path / "search")
    bad_binding = launch(project, "DPCSearch.no_such_setting = 1")
    bad_oracle = launch(project, "DPCSearch.oracle = 'bayes'")
    no_port = launch(project, *SYNTHETIC, env={"KERASTUNER_ORACLE_IP": "127.0.0.1"})
    bad_cost = launch(project, "DPCSearch.oracle = 'pareto'",
                      "DPCSearch.pareto_cost = 'flops'")
    for proc in (bad_binding, bad_oracle, no_port, bad_cost):
        proc.wait(120)
        assert proc.returncode == 2, _output(proc)
        assert "Traceback" not in _output(proc)
    assert "nasseg-search-dpc: error: bad gin configuration" in _output(bad_binding)
    assert "no_such_setting" in _output(bad_binding)
    assert ("unknown DPC oracle 'bayes'; known oracles: evolution, pareto, random"
            in _output(bad_oracle))
    assert ("error: unknown pareto_cost 'flops'; known costs: madds, params, latency_ms"
            in _output(bad_cost))
    assert "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID" in _output(no_port)


@pytest.mark.slow
def test_demo_search_with_the_real_proxy(tmp_path, launch):
    project = str(tmp_path / "search")
    proc = launch(
        project,
        # The demo settings (gin/search/dpc_demo.gin), fewer trials and re-ranked models,
        # and the random oracle: the acceptance below is about searching for mIoU alone
        # (the demo's Pareto oracle also trades mIoU for cost; its own test is above).
        f"Data.data_dir = '{tmp_path / 'data'}'", "DPCSearch.max_trials = 8",
        "DPCSearch.oracle = 'random'",
        "DPCSearch.random_baseline = 3", "DPCSearch.rerank_top_k = 1",
        "DPCSearch.rerank_steps = 2",
        gin_files=[os.path.join(ROOT, "gin", "search", "dpc_demo.gin")])
    _wait([proc], timeout=400)

    with open(os.path.join(project, "leaderboard.json"), encoding="utf-8") as f:
        rows = json.load(f)["entries"]
    assert len(rows) == 8
    assert all(0.0 <= r["val_miou"] <= 1.0 and 1 <= r["steps"] <= 30 for r in rows)
    assert [r["val_miou"] for r in rows] == sorted((r["val_miou"] for r in rows),
                                                  reverse=True)
    # Acceptance: the best found cell beats the median of fresh random cells, each
    # trained with the full proxy budget (none of them is a searched cell).
    with open(os.path.join(project, "random_baseline.json"), encoding="utf-8") as f:
        baseline = json.load(f)
    assert baseline["complete"] and len(baseline["entries"]) == 3
    assert all(e["steps"] == 30 for e in baseline["entries"])
    assert not {json.dumps(e["cell"]) for e in baseline["entries"]} & {
        json.dumps(r["cell"]) for r in rows}
    median = statistics.median(e["val_miou"] for e in baseline["entries"])
    assert baseline["median_random_miou"] == pytest.approx(median)
    assert rows[0]["val_miou"] > median and baseline["best_beats_median"]
    assert "random baseline: median val_miou of 3 random cells" in _output(proc)
    best = load_dpc_cell(os.path.join(project, "best_cell.json"))
    assert best.to_config() == rows[0]["cell"]
    with open(os.path.join(project, "trial_" + rows[0]["trial_id"], "result.json"),
              encoding="utf-8") as f:
        result = json.load(f)
    assert result["metrics"]["val_miou"] == pytest.approx(rows[0]["val_miou"])
    assert result["history"] and "stop_reason" in result["objective"]
    with open(os.path.join(project, "rerank.json"), encoding="utf-8") as f:
        rerank = json.load(f)
    assert rerank["complete"] and len(rerank["entries"]) == 1
    assert math.isfinite(rerank["entries"][0]["rerank_miou"])
    assert os.path.exists(os.path.join(project, "operative_config.gin"))
    assert "re-ranked 1 cells" in _output(proc)
    # The chain: the proxy backbone was trained on the task first.
    assert os.path.isdir(os.path.join(project, "backbone", "checkpoints"))


@pytest.mark.slow  # two processes, ~15 s here; the scoring's logic: tests/search/dpc
def test_cost_scored_search_from_another_folder(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "nasseg-search-dpc")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for var in ("TUNER_ID", "ORACLE_IP", "ORACLE_PORT"):
        env.pop(f"KERASTUNER_{var}", None)
    bindings = ["DPCSearch.objective = 'synthetic_cost'", "DPCSearch.costs = ()",
                "DPCSearch.max_trials = 4", "DPCSearch.cost_target = 1e9",
                "DPCSearch.cost_exponent = -1.0"]

    def start(folder, *extra):
        args = [script, f"--model_dir={folder}"]
        args += [f"--gin_bindings={b}" for b in bindings + list(extra)]
        return subprocess.Popen(args, cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    good = start("search")
    bad = start("bad", "DPCSearch.cost_exponent_below = 0.5")
    out, err = good.communicate(timeout=300)
    assert good.returncode == 0, err[-3000:]
    bad_out, bad_err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and not bad_out and "Traceback" not in bad_err
    assert bad_err.strip().splitlines() == [
        "nasseg-search-dpc: error: DPCSearch.cost_exponent_below: expected a finite "
        "number <= 0 (a dearer cell must not score higher), got 0.5"]
    assert not os.path.exists(tmp_path / "bad")
    with open(tmp_path / "search" / "leaderboard.json", encoding="utf-8") as f:
        rows = json.load(f)["entries"]
    assert len(rows) == 4
    for row in rows:
        assert math.isclose(row["score"], row["val_miou"] * 1e9 / row["madds"],
                            rel_tol=1e-9)
        assert f"val_miou {row['val_miou']:.4f} score {row['score']:.4f}" in out
    # Resuming the project with the raw mIoU as the objective: refused in one line,
    # and the project's saved configuration is left as it was.
    with open(tmp_path / "search" / "config.gin", encoding="utf-8") as f:
        config_gin = f.read()
    again = start("search", "DPCSearch.objective = 'synthetic'")
    again_out, again_err = again.communicate(timeout=300)
    assert again.returncode == 2 and "Traceback" not in again_err, again_err[-3000:]
    assert again_err.strip().splitlines() == [
        "nasseg-search-dpc: error: this project's trials were ranked by 'score', the "
        "configuration now ranks by 'val_miou' (another DPCSearch.objective): use a new "
        "project folder"]
    with open(tmp_path / "search" / "config.gin", encoding="utf-8") as f:
        assert f.read() == config_gin
