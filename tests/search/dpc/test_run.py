"""The DPC search end to end: tuner, leaderboard, re-ranking, pictures and TensorBoard."""

import csv
import json
import os

import pytest
import tensorflow as tf
from PIL import Image

from dpc_helpers import SCORE, SPACE, new_oracle
from nasseg_tf.data.inputs import DataConfig
from nasseg_tf.fileio import TEMP_MARKER
from nasseg_tf.search.dpc.costs import count_cost
from nasseg_tf.search.dpc.leaderboard import LEADERBOARD_COLUMNS, write_leaderboard
from nasseg_tf.search.dpc.objectives import (SyntheticObjectiveConfig, make_objective,
                                             synthetic_objective)
from nasseg_tf.search.dpc.rerank import rerank, spearman
from nasseg_tf.search.dpc.run import DPCSearchConfig, run_search
from nasseg_tf.search.dpc.tuner import DPCTuner
from nasseg_tf.search_space.dpc import load_dpc_cell




def test_tuner_writes_trials_leaderboard_top_cells_and_rerank(tmp_path):
    project = str(tmp_path / "search")
    objective = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3, steps=40, eval_every=10))
    oracle = new_oracle(tmp_path, options={"explore": 0.5, "top_k": 3}, max_trials=14,
                     early_stopping_min_trials=3)
    tuner = DPCTuner(oracle, objective, project, verbose=False,
                               leaderboard_every_s=0, save_top_k=4)
    tuner.search()
    rows = write_leaderboard(oracle, project, top_k=4)

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
    assert tuple(table[0]) == LEADERBOARD_COLUMNS
    assert [r["trial_id"] for r in table] == [r["trial_id"] for r in rows]
    assert json.loads(table[0]["cell"]) == rows[0]["cell"]
    with open(os.path.join(project, "leaderboard.json"), encoding="utf-8") as f:
        board = json.load(f)
    assert board["num_completed"] == 14 and board["entries"] == rows
    assert sorted(os.listdir(os.path.join(project, "top_cells"))) == [
        f"top_0{i}.json" for i in range(1, 5)]
    best = load_dpc_cell(os.path.join(project, "best_cell.json"))
    assert best.to_config() == rows[0]["cell"]
    assert not [f for f in os.listdir(project) if TEMP_MARKER in f]
    # Periodic writes stay cheap: pictures and TensorBoard only in the final write.
    assert not {"best_cell.png", "search_progress.png", "tensorboard"} & set(
        os.listdir(project))

    # Re-ranking with an injected trainer: scores, ranks, Spearman, resumable.
    def fake_finetune(cell, work_dir):
        assert os.path.isdir(work_dir)
        return {"miou": 1.0 - SCORE(cell) if cell.branches[0].op == "conv"
                else SCORE(cell)}

    summary = rerank(rows, fake_finetune, project, top_k=5,
                               settings={"steps": 3}, verbose=False)
    with open(os.path.join(project, "rerank.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(summary)) and saved["complete"]
    entries = saved["entries"]
    assert [e["trial_id"] for e in entries] == [r["trial_id"] for r in rows[:5]]
    assert saved["spearman"] == pytest.approx(spearman(
        [e["proxy_miou"] for e in entries], [e["rerank_miou"] for e in entries]))
    assert sorted(e["rerank_rank"] for e in entries) == [1, 2, 3, 4, 5]
    assert saved["best"]["rerank_rank"] == 1
    assert load_dpc_cell(os.path.join(project, "rerank_best_cell.json")).to_config() \
        == saved["best"]["cell"]

    def must_not_run(cell, work_dir):
        raise AssertionError("already re-ranked")

    again = rerank(rows, must_not_run, project, top_k=5, settings={"steps": 3},
                             verbose=False)
    assert again["entries"] == entries
    lo, hi = saved["spearman_interval"]
    assert lo <= saved["spearman"] <= hi

    # Spread over the ranking: evenly spaced proxy ranks, first and last included.
    spread = rerank(rows, fake_finetune, project, top_k=4, settings={"steps": 4},
                    verbose=False, spread=True)
    assert [e["proxy_rank"] for e in spread["entries"]] == [1, 5, 10, 14]


def _fake_costs(cell):
    """Deterministic stand-in costs (no counting): separable convs dear, pooling cheap."""
    dear = sum(b.op == "conv" and b.kernel == 3 for b in cell.branches)
    return {"madds": 1e9 + 4e8 * dear + 1e7 * cell.branches[-1].input,
            "params": 1000 * dear}


def test_leaderboard_carries_costs_and_writes_the_front_in_the_official_format(tmp_path):
    project = str(tmp_path / "search")
    objective = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3, steps=40,
                                                                    eval_every=10))
    oracle = new_oracle(tmp_path, name="pareto", options={"explore": 0.3}, max_trials=10,
                        early_stopping_min_trials=3)
    tuner = DPCTuner(oracle, objective, project, verbose=False, leaderboard_every_s=0,
                     cost_fn=_fake_costs)
    tuner.search()
    refs = {"dpc_top1_cityscapes": {"madds": 3e9}, "aspp": {"madds": 2.8e9}}
    rows = write_leaderboard(oracle, project, top_k=3, final=True, references=refs)
    for row in rows:
        assert {k: row[k] for k in ("madds", "params")} == _fake_costs(
            load_dpc_cell(row["cell"]))
        assert row["latency_ms"] is None  # not measured
    front = [r for r in rows if r["on_front"]]
    assert {r["trial_id"] for r in front} == {t.trial_id for t in oracle.front()}
    for row in rows:  # brute force: on the front iff no row dominates it
        beaten = any(o["val_miou"] >= row["val_miou"] and o["madds"] <= row["madds"]
                     and (o["val_miou"], o["madds"]) != (row["val_miou"], row["madds"])
                     for o in rows)
        assert row["on_front"] == (not beaten)
    with open(os.path.join(project, "pareto_front.json"), encoding="utf-8") as f:
        saved = json.load(f)
    cheapest_first = sorted(front, key=lambda r: r["madds"])
    assert [e["trial_id"] for e in saved["entries"]] == [
        r["trial_id"] for r in cheapest_first]
    assert saved["cost"] == "madds"
    files = sorted(os.listdir(os.path.join(project, "front_cells")))
    assert files == [f"front_{i:02d}.json" for i in range(1, len(front) + 1)]
    for name, row in zip(files, cheapest_first):
        path = os.path.join(project, "front_cells", name)
        assert load_dpc_cell(path).to_config() == row["cell"]  # the official format
    with open(os.path.join(project, "leaderboard.csv"), encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [float(r["madds"]) for r in table] == [r["madds"] for r in rows]
    assert {r["latency_ms"] for r in table} == {""}
    _check_png(os.path.join(project, "pareto_front.png"))


def test_pareto_search_counts_the_cells_it_reports(tmp_path):
    project = str(tmp_path / "search")
    objective = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3, steps=40,
                                                                    eval_every=10))
    config = DPCSearchConfig(oracle="pareto", costs=(), max_trials=2, verbose=False,
                             leaderboard_every_s=0)
    rows = run_search(project, search=config, argv=["test"],
                      objective_fn=objective)["leaderboard"]
    counted = count_cost(rows[0]["cell"])
    assert rows[0]["madds"] == counted["madds"] and rows[0]["params"] is None
    assert any(r["on_front"] for r in rows)
    _check_png(os.path.join(project, "pareto_front.png"))
    with pytest.raises(ValueError, match="unknown DPC cell cost 'flops'"):
        run_search(str(tmp_path / "other"), search=DPCSearchConfig(costs=("flops",)),
                   argv=["test"], objective_fn=objective)
    assert not os.path.exists(tmp_path / "other")  # nothing half-written


def test_cost_scored_search_ranks_by_score_and_shows_the_raw_miou(tmp_path):
    project = str(tmp_path / "search")
    # Hard-ish: every cell is above 1B Multiply-Adds, so score = mIoU x 1e9 / madds.
    config = DPCSearchConfig(objective="synthetic_cost", costs=(), max_trials=5,
                             early_stopping=False, cost_target=1e9, cost_exponent=-1.0,
                             verbose=False, leaderboard_every_s=0)
    rows = run_search(project, search=config, argv=["test"],
                      synthetic=SyntheticObjectiveConfig(seed=3))["leaderboard"]
    assert len(rows) == 5
    assert rows[0]["madds"] == count_cost(rows[0]["cell"])["madds"]  # reported
    for row in rows:
        assert row["val_miou"] == pytest.approx(SCORE(load_dpc_cell(row["cell"])))  # raw
        assert row["score"] == pytest.approx(row["val_miou"] * 1e9 / row["madds"])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert [r["val_miou"] for r in rows] != sorted((r["val_miou"] for r in rows),
                                                   reverse=True)  # the cost mattered
    with open(os.path.join(project, "leaderboard.csv"), encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [(float(r["val_miou"]), float(r["score"])) for r in table] == [
        (pytest.approx(r["val_miou"], abs=1e-6), pytest.approx(r["score"], abs=1e-6))
        for r in rows]
    with open(os.path.join(project, f"trial_{rows[0]['trial_id']}", "result.json"),
              encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["objective"]["cost_target"] == 1e9
    assert saved["metrics"]["val_miou"] == pytest.approx(rows[0]["val_miou"])  # raw
    assert saved["metrics"]["score"] == pytest.approx(rows[0]["score"])
    with open(os.path.join(project, f"trial_{rows[0]['trial_id']}", "trial.json"),
              encoding="utf-8") as f:
        trial = json.load(f)
    metrics = trial["metrics"]["metrics"]
    assert metrics["val_miou"]["observations"][0]["value"] == [
        pytest.approx(rows[0]["val_miou"])]
    assert trial["score"] == pytest.approx(rows[0]["score"])
    # Resuming the project with the raw mIoU as the objective is refused, and the
    # project's saved configuration stays as it was.
    with open(os.path.join(project, "config.gin"), encoding="utf-8") as f:
        config_gin = f.read()
    with pytest.raises(ValueError, match="ranked by 'score'"):
        run_search(project, argv=["test"], search=DPCSearchConfig(
            objective="synthetic", costs=(), max_trials=6, verbose=False))
    with open(os.path.join(project, "config.gin"), encoding="utf-8") as f:
        assert f.read() == config_gin
    # Bad settings: one error naming the setting, nothing written.
    for bad, message in ((dict(cost_exponent=0.5), "DPCSearch.cost_exponent"),
                         (dict(score_cost="flops"), "DPCSearch.score_cost"),
                         (dict(oracle="pareto"), "use it with the random or evolution")):
        with pytest.raises(ValueError, match=message):
            run_search(str(tmp_path / "bad"), argv=["test"],
                       search=DPCSearchConfig(objective="synthetic_cost", **bad))
        assert not os.path.exists(tmp_path / "bad")


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(ValueError, match="known objectives: proxy, proxy_cost, synthetic, "
                                         "synthetic_cost"):
        make_objective("oracle_score")


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
    objective = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3, steps=40,
                                                                    eval_every=10))
    config = DPCSearchConfig(max_trials=9, verbose=False, early_stopping_min_trials=3,
                             random_baseline=3, leaderboard_every_s=0, save_top_k=3,
                             costs=())  # costs: the tests below
    out = run_search(project, search=config, data=DataConfig(), argv=["test"],
                     objective_fn=objective)
    files = set(os.listdir(project))
    rows = out["leaderboard"]
    assert len(rows) == 9 and out["baseline"]["complete"]
    for name in ("best_cell.png", "search_progress.png"):
        assert name in files
        _check_png(os.path.join(project, name))
    assert not [f for f in files if TEMP_MARKER in f]
    assert "config.gin" in files and "DPCSearch.max_trials = 9" in open(
        os.path.join(project, "config.gin"), encoding="utf-8").read()

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

    # A rerun of the finished search runs no trial and leaves one event file with the
    # same history (idempotent).
    again = run_search(project, search=config, argv=["test"], objective_fn=objective)
    assert again["leaderboard"] == rows
    assert _events(folder)["dpc/val_miou"] == tags["dpc/val_miou"]
