"""DPC search pictures: the cell as a DAG and the search's progress."""

import os

import numpy as np
import pytest

from layer_checks import check_png
from nasseg_tf.search.dpc import plots
from nasseg_tf.search_space import genotypes as G
from nasseg_tf.search_space.dpc import DPCSearchSpace, load_dpc_cell


POOL_CHAIN = [{"op": "pyramid_pooling", "grid_size": [2, 4], "input": -1},
              {"kernel": 1, "rate": [1, 1], "op": "conv", "input": 0},
              {"kernel": 3, "rate": [6, 18], "op": "conv", "input": 1},
              {"kernel": 3, "rate": [21, 21], "op": "conv", "input": 2},
              {"op": "pyramid_pooling", "grid_size": [8, 8], "input": -1}]


def test_dpc_cell_layout_puts_branches_in_columns_by_depth():
    depth, row = plots._dpc_layout(load_dpc_cell(POOL_CHAIN))
    assert depth == [1, 2, 3, 4, 1]  # longest path from F
    assert row == [0, 1, 2, 3, 4]  # one row each; a chain descends left to right
    # Published top-1: Y0 on F; Y1, Y3, Y4 on Y0; Y2 on Y1.
    depth, row = plots._dpc_layout(load_dpc_cell("dpc_top1_cityscapes"))
    assert depth == [1, 2, 3, 2, 2] and sorted(row) == [0, 1, 2, 3, 4]
    assert row[2] == row[1] + 1  # Y2 right below its input Y1


def test_plot_dpc_cell_writes_png(tmp_path):
    top1 = load_dpc_cell("dpc_top1_cityscapes")
    width, height = check_png(plots.plot_dpc_cell("dpc_top1_cityscapes",
                                                   tmp_path / "top1.png"))
    assert width > 1.5 * height  # F -> 3 columns -> concat, 5 rows
    check_png(plots.plot_dpc_cell(top1, str(tmp_path / "sub" / "top1.png"),
                                   title="published top-1"))
    chain_width, _ = check_png(plots.plot_dpc_cell(POOL_CHAIN, tmp_path / "chain.png"))
    assert chain_width > width  # one more column
    load_dpc_cell(POOL_CHAIN).save(tmp_path / "chain.json")
    check_png(plots.plot_dpc_cell(tmp_path / "chain.json", tmp_path / "from_file.png"))
    check_png(plots.plot_dpc_cell(POOL_CHAIN[:1], tmp_path / "one.png"), min_width=300,
               min_height=120)


def test_plot_dpc_cell_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="cell: expected a DPCCell, a list of branch "
                                         "configs, a published cell name or a JSON path, "
                                         "got CellGenotype"):
        plots.plot_dpc_cell(G.load_genotype("autodeeplab_cityscapes").cell,
                            tmp_path / "x.png")
    with pytest.raises(ValueError, match="got int"):
        plots.plot_dpc_cell(5, tmp_path / "x.png")
    with pytest.raises(G.GenotypeError, match=r"cell\[1\]\.input: 3 is not allowed"):
        plots.plot_dpc_cell([POOL_CHAIN[0], dict(POOL_CHAIN[1], input=3)],
                            tmp_path / "x.png")
    with pytest.raises(G.GenotypeError, match="unknown DPC cell 'dpc_top9'"):
        plots.plot_dpc_cell("dpc_top9", tmp_path / "x.png")
    with pytest.raises(ValueError, match="path: required"):
        plots.plot_dpc_cell(POOL_CHAIN, None)
    assert not os.listdir(tmp_path)


def _rows(count, seed=0):
    """Leaderboard-like rows (best first, as the leaderboard lists them)."""
    rng = np.random.default_rng(seed)
    space = DPCSearchSpace()
    rows = [{"trial_id": f"{i:02d}", "val_miou": float(0.2 + 0.4 * rng.random()),
             "stopped_early": bool(i % 4 == 3),
             "origin": "uniform" if i < 3 or i % 2 else "mutation",
             "cell": space.sample(rng).to_config()} for i in range(count)]
    return sorted(rows, key=lambda row: -row["val_miou"])


def test_trial_order_sorts_by_trial_number():
    rows = [{"trial_id": i, "val_miou": 0.5} for i in ("10", "2", "07")]
    assert [(n, r["trial_id"]) for n, r in plots.trial_order(rows)] == [
        (2, "2"), (7, "07"), (10, "10")]
    rows = [{"trial_id": i, "val_miou": 0.5} for i in ("b", "a")]
    assert [(n, r["trial_id"]) for n, r in plots.trial_order(rows)] == [(0, "a"), (1, "b")]


def test_plot_dpc_search_writes_png(tmp_path):
    rows = _rows(24)
    baseline = {"entries": [{"val_miou": v} for v in (0.3, 0.35, 0.4)],
                "median_random_miou": 0.35}
    width, height = check_png(plots.plot_dpc_search(rows, tmp_path / "progress.png",
                                                     baseline=baseline))
    assert 1.2 * height < width
    check_png(plots.plot_dpc_search(rows[:1], str(tmp_path / "one.png")))
    check_png(plots.plot_dpc_search(_rows(400, seed=1), tmp_path / "many.png"))
    check_png(plots.plot_dpc_search([], tmp_path / "empty.png", baseline=baseline))
    for row in rows:  # other oracles' origins and leaderboard rows without extras
        row["origin"] = "initial" if row["trial_id"] < "05" else "enumeration"
    check_png(plots.plot_dpc_search(rows, tmp_path / "other.png"))
    check_png(plots.plot_dpc_search(
        [{"trial_id": r["trial_id"], "val_miou": r["val_miou"]} for r in rows],
        tmp_path / "bare.png"))


def test_plot_dpc_search_rejects_bad_input(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="rows: expected a list of leaderboard rows"):
        plots.plot_dpc_search({"trial_id": "0", "val_miou": 0.5}, out)
    with pytest.raises(ValueError, match=r"rows\[1\]: expected a leaderboard row"):
        plots.plot_dpc_search([{"trial_id": "0", "val_miou": 0.5}, 0.6], out)
    with pytest.raises(ValueError, match=r"rows\[0\]: missing val_miou"):
        plots.plot_dpc_search([{"trial_id": "0", "miou": 0.5}], out)
    with pytest.raises(ValueError, match=r"rows\[0\]\.val_miou: expected a finite"):
        plots.plot_dpc_search([{"trial_id": "0", "val_miou": float("nan")}], out)
    with pytest.raises(ValueError, match=r"rows\[1\]: trial '0' appears twice"):
        plots.plot_dpc_search([{"trial_id": "0", "val_miou": 0.5}] * 2, out)
    with pytest.raises(ValueError, match="baseline: expected the random_baseline summary"):
        plots.plot_dpc_search(_rows(3), out, baseline={"median": 0.3})
    with pytest.raises(ValueError, match="path: required"):
        plots.plot_dpc_search(_rows(3), "")
    assert not os.listdir(tmp_path)


def test_plot_pareto_front_writes_png_with_references(tmp_path):
    rows = _rows(30, seed=2)
    for i, row in enumerate(rows):
        row["madds"] = int(2e9 + 1e8 * ((7 * i) % 13))
    refs = {"dpc_top1_cityscapes": {"madds": 2_986_401_600}, "aspp": {"madds": 2.82e9}}
    width, height = check_png(plots.plot_pareto_front(rows, tmp_path / "front.png", refs))
    assert width > height
    # Rows without a cost are left out; none at all, or one, still draw.
    check_png(plots.plot_pareto_front(rows + [{"trial_id": "99", "val_miou": 0.9}],
                                      tmp_path / "mixed.png"))
    check_png(plots.plot_pareto_front([], tmp_path / "empty.png", refs))


def test_plot_pareto_front_rejects_bad_input(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"trial 00\.madds: expected a finite"):
        plots.plot_pareto_front([{"trial_id": "00", "val_miou": 0.5,
                                  "madds": float("inf")}], out)
    with pytest.raises(ValueError, match=r"references\['aspp'\]: expected a dict"):
        plots.plot_pareto_front(_rows(2), out, {"aspp": 3})
    with pytest.raises(ValueError, match="references: expected"):
        plots.plot_pareto_front(_rows(2), out, [1])
    assert not os.listdir(tmp_path)
