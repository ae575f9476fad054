"""bench/search_table.py: medians per configuration, the port's row matched by size,
ratios, and a clear error for a file that is not a record."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "search_table.py")


def _ours(path, weight, arch, rss, remat=False, crop=65, fused=True):
    record = {"benchmark": "search", "crop_size": [crop, crop], "batch_size": 2,
              "filter_multiplier": 4, "num_layers": 12, "remat": remat,
              "partial_channels": 1, "atrous_op": "regular", "loop_layers": True,
              "weights_step_seconds_median": weight, "arch_step_seconds_median": arch,
              "weights_first_call_seconds": 100.0, "arch_first_call_seconds": 50.0,
              "peak_rss_gib": rss}
    if fused is not None:  # None: a record from before the lever existed
        record["fused_sgd"] = fused
    path.write_text(json.dumps(record))


def _port(path, weight, arch, rss, crop=65):
    record = {"impl": "port", "config": {"crop": crop, "batch": 2, "filter_multiplier": 4,
                                         "num_layers": 12},
              "weight_step_s_median": weight, "arch_step_s_median": arch,
              "peak_rss_time_v_gib": rss}
    path.write_text(json.dumps(record))


def _run(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_medians_and_ratios_against_the_port_of_the_same_size(tmp_path):
    for i, (w, a, r) in enumerate([(1.0, 0.5, 4.0), (3.0, 0.7, 4.2), (2.0, 0.6, 9.0)]):
        _ours(tmp_path / f"ours_{i}.json", w, a, r)
    _ours(tmp_path / "remat.json", 5.0, 5.0, 3.0, remat=True)
    _ours(tmp_path / "big.json", 9.0, 9.0, 9.0, crop=321)
    _ours(tmp_path / "old.json", 4.0, 4.0, 4.0, fused=None)  # Keras' SGD
    _ours(tmp_path / "keras_sgd.json", 6.0, 6.0, 6.0, fused=False)
    for i, (w, a, r) in enumerate([(10.0, 6.0, 1.0), (8.0, 2.0, 2.0)]):
        _port(tmp_path / f"port_{i}.json", w, a, r)
    out = _run("*.json", "--record=rows.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["crop"][0], r["remat"], r["fused_sgd"], r["runs"]) for r in rows] == [
        (321, False, True, 1), (65, False, True, 3), (65, False, False, 2),
        (65, True, True, 1)]
    big, exact, keras_sgd, remat = rows
    assert keras_sgd["weight_step_s"] == 5.0
    assert big["port_runs"] == 0 and "ratio_weight_step_s" not in big
    assert (exact["weight_step_s"], exact["arch_step_s"], exact["peak_rss_gib"]) == (2.0, 0.6, 4.2)
    assert (exact["port_weight_step_s"], exact["port_arch_step_s"]) == (9.0, 4.0)
    assert abs(exact["ratio_weight_step_s"] - 2.0 / 9.0) < 1e-12
    assert abs(exact["ratio_peak_rss_gib"] - 4.2 / 1.5) < 1e-12
    assert remat["port_runs"] == 2
    table = out.stdout.splitlines()
    assert len(table) == 2 + 4 and "| 65², 4, 12 | remat | 1 |" in table[-1]
    assert "| 65², 4, 12 | Keras SGD | 2 |" in table[-2]


def test_a_file_that_is_not_a_record_is_named(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{")
    for name in ("other.json", "broken.json"):
        out = _run(name, "--record=rows.json", cwd=tmp_path)
        assert out.returncode == 2 and name in out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / "rows.json").exists()
