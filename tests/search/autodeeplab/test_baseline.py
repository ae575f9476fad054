"""Tests of the Auto-DeepLab random baseline (random architectures at equal budget)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasseg_tf import fileio
from nasseg_tf.search.autodeeplab import baseline
from nasseg_tf.search_space.genotypes import NetworkGenotype, load_genotype
from nasseg_tf.search_space.sampling import architecture_key

SEARCHED = NetworkGenotype(load_genotype("autodeeplab_cityscapes").cell, (0, 0, 1, 2))


class Recorder:
    """A retrain_fn that records its calls; the mIoU is a function of the path, and it
    raises on call number ``fail_at`` (an injected failure mid-run)."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, genotype, work_dir):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("injected failure")
        self.calls.append((architecture_key(genotype), os.path.basename(work_dir)))
        return 0.1 + 0.01 * sum(genotype.path) + 0.001 * len(self.calls)


def test_summary_ranks_the_searched_model():
    summary = baseline.summarize(0.5, [0.2, 0.6, 0.4, 0.5])
    assert summary["searched_rank"] == 2 and summary["out_of"] == 5
    assert summary["random_beaten"] == 2
    assert summary["mean"] == pytest.approx(0.425)
    assert summary["std"] == pytest.approx(0.17078, abs=1e-5)
    assert (summary["min"], summary["max"]) == (0.2, 0.6)
    assert baseline.summarize(0.5, [0.3])["std"] is None


def test_baseline_retrains_distinct_random_architectures_and_reports(tmp_path):
    retrain = Recorder()
    result = baseline.random_baseline(str(tmp_path), SEARCHED, retrain, 4, seed=1,
                                      searched_miou=0.3, verbose=False)
    keys = [key for key, _ in retrain.calls]
    assert len(set(keys)) == 4 and architecture_key(SEARCHED) not in keys
    assert [d for _, d in retrain.calls] == [f"random_{i:03d}" for i in range(4)]
    assert result["complete"] and result["summary"]["count"] == 4
    assert fileio.read_json(str(tmp_path / baseline.RESULTS_FILE)) == json.loads(
        json.dumps(result))
    for entry in result["entries"]:
        genotype = NetworkGenotype.from_config(entry["genotype"])
        assert len(genotype.path) == 4 and genotype.cell.num_blocks == 5
    lines = baseline.report_lines(result)
    assert "rank" in lines[1] and "K = 4" in lines[0]


def test_baseline_resumes_after_a_failure_with_the_same_samples(tmp_path):
    failing = Recorder(fail_at=2)
    with pytest.raises(RuntimeError, match="injected"):
        baseline.random_baseline(str(tmp_path), SEARCHED, failing, 4, seed=3,
                                 searched_miou=0.3, verbose=False)
    partial = fileio.read_json(str(tmp_path / baseline.RESULTS_FILE))
    assert not partial["complete"] and len(partial["entries"]) == 2
    resumed = Recorder()
    result = baseline.random_baseline(str(tmp_path), SEARCHED, resumed, 4, seed=3,
                                      searched_miou=0.3, verbose=False)
    assert [d for _, d in resumed.calls] == ["random_002", "random_003"]  # not redone
    assert result["entries"][:2] == partial["entries"]
    fresh = Recorder()
    baseline.random_baseline(str(tmp_path / "fresh"), SEARCHED, fresh, 4, seed=3,
                             searched_miou=0.3, verbose=False)
    assert [k for k, _ in fresh.calls] == [k for k, _ in failing.calls + resumed.calls]


def test_baseline_with_other_settings_starts_over(tmp_path):
    baseline.random_baseline(str(tmp_path), SEARCHED, Recorder(), 2, seed=0,
                             searched_miou=0.3, settings={"steps": 10}, verbose=False)
    again = Recorder()
    baseline.random_baseline(str(tmp_path), SEARCHED, again, 2, seed=0,
                             searched_miou=0.3, settings={"steps": 20}, verbose=False)
    assert len(again.calls) == 2


def test_baseline_retrains_the_searched_model_when_no_score_is_given(tmp_path):
    retrain = Recorder()
    result = baseline.random_baseline(str(tmp_path), SEARCHED, retrain, 2, seed=0,
                                      verbose=False)
    assert retrain.calls[0] == (architecture_key(SEARCHED), "searched")
    assert result["searched"]["retrained_here"] and result["searched"]["miou"] > 0
    again = Recorder()
    baseline.random_baseline(str(tmp_path), SEARCHED, again, 2, seed=0, verbose=False)
    assert again.calls == []


def _tiny_retrain(tmp_path):
    """A finished tiny retrain of SEARCHED (the tiny test recipe) for the CLI."""
    from nasseg_tf.cli import configs  # pylint: disable=import-outside-toplevel
    import gin_runs  # pylint: disable=import-outside-toplevel

    SEARCHED.save(str(tmp_path / "searched.json"))
    run_dir = str(tmp_path / "retrain")
    configs.parse(["test/tiny.gin"],
                  [f"Data.data_dir = '{tmp_path / 'data'}'", "Training.steps = 4",
                   f"Model.genotype = '{tmp_path / 'searched.json'}'"])
    gin_runs.train(run_dir)
    return run_dir


@pytest.mark.slow
@pytest.mark.e2e
def test_cli_random_baseline_resumes_after_kill(tmp_path):
    run_dir = _tiny_retrain(tmp_path)
    out_dir = str(tmp_path / "baseline")
    results = os.path.join(out_dir, baseline.RESULTS_FILE)
    cmd = [os.path.join(os.path.dirname(sys.executable), "nasseg-search-autodeeplab"),
           "--random_baseline=3", f"--retrain_dir={run_dir}", f"--model_dir={out_dir}"]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once the first random one is recorded
        if os.path.exists(results) and fileio.read_json(results)["entries"]:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = fileio.read_json(results)
    assert not first["complete"] and len(first["entries"]) >= 1
    done = first["entries"][0]
    done_mtime = os.path.getmtime(os.path.join(out_dir, "random_000", "eval_results.json"))
    finished = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    result = fileio.read_json(results)
    assert result["complete"] and len(result["entries"]) == 3
    assert result["entries"][0] == done  # same sample, not recomputed
    assert os.path.getmtime(os.path.join(out_dir, "random_000", "eval_results.json")) \
        == done_mtime
    assert "searched mIoU" in finished.stdout and "rank" in finished.stdout
    searched = fileio.read_json(os.path.join(run_dir, "eval_results.json"))
    assert result["searched"]["miou"] == pytest.approx(searched["miou"])
    for i in range(3):  # each retrained with the searched run's exact budget
        assert "Training.steps = 4" in open(os.path.join(
            out_dir, f"random_{i:03d}", "config.gin"), encoding="utf-8").read()


def test_cli_random_baseline_needs_a_retrain_dir(tmp_path):
    from nasseg_tf.cli import search_autodeeplab  # pylint: disable=import-outside-toplevel

    with pytest.raises(ValueError, match="--retrain_dir"):
        search_autodeeplab.search([], [], str(tmp_path), random_baseline=2)
    with pytest.raises(FileNotFoundError, match="config.gin"):
        search_autodeeplab.search([], [], str(tmp_path), random_baseline=2,
                                  retrain_dir=str(tmp_path / "nothing"))


@pytest.mark.slow
def test_cli_bad_baseline_flags_are_one_line_and_exit_2(tmp_path):
    tool = os.path.join(os.path.dirname(sys.executable), "nasseg-search-autodeeplab")
    for flags, message in [
            (["--random_baseline=2"], "needs --retrain_dir"),
            (["--random_baseline=2", f"--retrain_dir={tmp_path / 'none'}"], "config.gin"),
            (["--random_baseline=-1"], "random_baseline")]:
        done = subprocess.run([tool, f"--model_dir={tmp_path / 'out'}", *flags],
                              cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert lines[0].startswith("nasseg-search-autodeeplab: error:")
    assert not os.path.exists(tmp_path / "out" / baseline.RESULTS_FILE)

