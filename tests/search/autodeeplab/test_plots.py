"""Auto-DeepLab pictures: PNGs of the trellis path and of the cell, written atomically."""

import numpy as np
import pytest

from layer_checks import check_png
from nasseg_tf.search.autodeeplab import decode
from nasseg_tf.search.autodeeplab import plots
from nasseg_tf.search_space import genotypes as G


def test_plot_network_path_writes_png(tmp_path):
    genotype = G.load_genotype("autodeeplab_cityscapes")
    _, betas = decode.encode_published(genotype)
    with_betas = plots.plot_network_path(genotype.path, betas, tmp_path / "path.png",
                                         title="autodeeplab_cityscapes")
    check_png(with_betas)
    rng = np.random.default_rng(0)
    betas = rng.normal(size=(3, 4, 3))
    path, _ = decode.viterbi_path(betas)
    check_png(plots.plot_network_path(path, betas=betas,
                                       out_path=str(tmp_path / "new" / "short.png")))
    check_png(plots.plot_network_path(np.array([1]), out_path=tmp_path / "one.png"))


def test_plot_network_path_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="betas: has L = 3 layers but path has 2"):
        plots.plot_network_path((0, 1), np.zeros((3, 4, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="path: required"):
        plots.plot_network_path((0, 1))
    with pytest.raises(G.GenotypeError, match=r"path\[1\]"):
        plots.plot_network_path((0, 2), out_path=tmp_path / "x.png")


def test_plot_cell_writes_png(tmp_path):
    cell = G.load_genotype("autodeeplab_cityscapes").cell
    check_png(plots.plot_cell(cell, tmp_path / "cell.png", title="published cell"))
    small = decode.decode_cell(np.random.default_rng(1).normal(size=(5, 8)), num_blocks=2)
    check_png(plots.plot_cell(small, tmp_path / "small.png"), min_width=300)
    with pytest.raises(ValueError, match="cell: expected a CellGenotype"):
        plots.plot_cell(cell.to_config(), tmp_path / "x.png")


# --------------------------------------------------------------------------------------
# DPC.

#: Pyramid pooling, a 1x1 conv and a chain F -> Y0 -> Y1 -> Y2 -> Y3 (depth 4).
