"""``make demo`` end to end at toy size: search → decode → retrain → eval → export."""

import pytest
import os

from nasseg_tf.internals import flatten_layers
from nasseg_tf.cli.demo import run_demo
from nasseg_tf.search_space.genotypes import load_genotype

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

DATA = ["Data.demo_num_train = 8", "Data.demo_num_val = 2", "Data.demo_size = (40, 40)"]


def test_demo_searches_retrains_the_result_and_reports(tmp_path):
    lines = []
    out = run_demo(
        str(tmp_path / "demo"),
        gin_bindings=DATA + ["Training.steps = 2", "Training.batch_size = 2",
                             "Training.crop_size = (32, 32)", "Evaluation.num_pictures = 1",
                             "Model.overrides = {'filter_multiplier': 4, "
                             "'aspp_filters': 8, 'decoder_filters': 8, 'path': (0, 0)}"],
        search_bindings=DATA + ["Supernet.num_layers = 3", "Supernet.num_blocks = 2",
                                "Supernet.filter_multiplier = 2", "Search.steps = 2",
                                "Search.warmup_steps = 1", "Search.batch_size = 2",
                                "Search.crop_size = (32, 32)"],
        dpc_bindings=DATA + ["ProxyBackbone.crop_size = (33, 33)", "Proxy.steps = 3",
                             "Proxy.filters = 8", "Proxy.batch_size = 2",
                             "DPCSearch.max_trials = 2", "DPCSearch.random_baseline = 1",
                             "DPCSearch.rerank_top_k = 0", "DPCSearch.backbone_steps = 2",
                             "DPCSearch.backbone_batch_size = 2"],
        log=lines.append, random_baseline=1, baseline_steps=0)
    searched = load_genotype(os.path.join(out["search_dir"], "genotype.json"))
    assert searched == out["genotype"] and len(searched.path) == 3
    # The retrained model is the searched one: its 3-layer path, not the gin's 'path'.
    cells = {layer.name for layer in flatten_layers(out["model"])
             if layer.name.startswith("cell_") and layer.name[5:].isdigit()}
    assert cells == {"cell_0", "cell_1", "cell_2"}, cells
    assert os.path.isdir(out["export_dir"]) and os.path.getsize(out["overlay"]) > 1000
    text = "\n".join(lines)
    assert text.index("searched architecture") < text.index("demo: mIoU")
    assert searched.describe()[0] in text and lines[-1].startswith("demo: mIoU ")
    assert len(out["dpc_leaderboard"]) == 2
    assert os.path.exists(os.path.join(out["dpc_dir"], "best_cell.json"))
    assert "median of 1 random cells" in text
    assert "Pareto front, " in text  # the recipe's DPC oracle is the cost-aware one
    assert os.path.getsize(os.path.join(out["dpc_dir"], "pareto_front.png")) > 1000
    # One random Auto-DeepLab architecture at the retrain's budget, reported at the end.
    versus = out["random_baseline"]
    assert versus["complete"] and versus["searched"]["miou"] == out["miou"]
    assert len(load_genotype(versus["entries"][0]["genotype"]).path) == 3
    assert text.index("searched vs random") < text.index("demo: mIoU")
    assert "rank" in lines[-3] and "not a distribution" in lines[-2]
    for name in ("cell.png", "path.png"):
        assert os.path.getsize(os.path.join(out["search_dir"], name)) > 1000
