"""The derived cell built from genotypes."""

import numpy as np
import pytest

from layer_checks import check_layer
from nasseg_tf.layers.cell import DerivedCell
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, load_genotype

PUBLISHED = load_genotype("autodeeplab_cityscapes").cell
ALL_OPS_CELL = CellGenotype((
    (Edge("none", 0), Edge("max_pool_3x3", 1)),
    (Edge("avg_pool_3x3", 2), Edge("skip_connect", 0)),
    (Edge("sep_conv_3x3", 1), Edge("sep_conv_5x5", 3)),
    (Edge("atrous_conv_3x3", 4), Edge("atrous_conv_5x5", 0)),
    (Edge("sep_conv_3x3", 5), Edge("skip_connect", 1)),
))


@pytest.mark.parametrize("cell", [PUBLISHED, ALL_OPS_CELL], ids=["published", "all_ops"])
@pytest.mark.parametrize("stride", [1, 2])
def test_derived_cell_passes_layer_checks(cell, stride):
    out_hw = (-(-9 // stride), -(-10 // stride))
    check_layer(lambda: DerivedCell(cell, 4, stride=stride),
                [(2, 9, 10, 12), (2, 9, 10, 20)], (2, *out_hw, 20))


def test_prev_prev_is_resized_to_prev_and_projected():
    cell = DerivedCell(PUBLISHED, 4, resample_prev_prev=True)
    y = cell([np.zeros((1, 8, 8, 12), "float32"), np.zeros((1, 16, 16, 40), "float32")])
    assert tuple(y.shape) == (1, 8, 8, 20)
    assert cell.preprocess_prev_prev is not None


def test_prev_prev_with_matching_channels_is_not_projected():
    cell = DerivedCell(PUBLISHED, 4)
    cell([np.zeros((1, 8, 8, 12), "float32"), np.zeros((1, 8, 8, 4), "float32")])
    assert cell.preprocess_prev_prev is None


def test_cell_config_accepts_a_dict_genotype():
    cell = DerivedCell(PUBLISHED.to_config(), 4)
    assert cell.cell == PUBLISHED
