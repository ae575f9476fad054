"""The Auto-DeepLab search space: op table, cell edges, trellis nodes, edges and paths."""

import itertools

import numpy as np
import pytest

from nasseg_tf.layers.ops import known_ops
from nasseg_tf.search_space import autodeeplab as S
from nasseg_tf.search_space import genotypes as G


def _is_legal(path):
    try:
        G.validate_path(list(path))
    except G.GenotypeError:
        return False
    return True


def test_op_table_is_declared_once_and_the_layers_build_every_op():
    assert S.PRIMITIVES == tuple(op.name for op in S.OP_TABLE)
    assert len(S.PRIMITIVES) == 8 and S.PRIMITIVES[0] == S.ZERO_OP
    assert set(S.PRIMITIVES) <= set(known_ops())
    assert {op.kind for op in S.OP_TABLE} == {"zero", "pool", "skip", "separable", "atrous"}


def test_cell_edge_layout_is_block_by_block_then_input():
    assert S.num_cell_edges(5) == 20
    assert [S.num_cell_edges(b) for b in (1, 2, 3)] == [2, 5, 9]
    index = S.cell_edge_index(5)
    assert len(index) == 20
    assert index[:5] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert index[-6:] == [(4, source) for source in range(6)]


def test_legal_transition_mask_small_trellis():
    up, same, down = S.UP, S.SAME, S.DOWN
    expected = np.zeros((3, 4, 3), bool)
    expected[0, 0, [same, down]] = True            # the stem: to level 0 or 1
    expected[1, 0, [same, down]] = True            # layer 0 has levels 0 and 1
    expected[1, 1, [up, same, down]] = True
    expected[2, 0, [same, down]] = True            # layer 1 has levels 0..2
    expected[2, 1, :] = True
    expected[2, 2, :] = True
    np.testing.assert_array_equal(S.legal_transition_mask(3), expected)
    # From layer 3 on every level exists; level 3 cannot go down.
    mask = S.legal_transition_mask(6)
    np.testing.assert_array_equal(mask[4:, 3], [[True, True, False]] * 2)
    np.testing.assert_array_equal(S.node_exists_mask(3),
                                  [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])


@pytest.mark.parametrize("num_layers", range(1, 7))
def test_legal_paths_are_exactly_the_valid_paths(num_layers):
    enumerated = list(S.legal_paths(num_layers))
    valid = [p for p in itertools.product(range(4), repeat=num_layers) if _is_legal(p)]
    assert enumerated == valid  # same set, both in lexicographic order




def test_count_paths_matches_enumeration_and_the_papers_figure():
    for layers in range(1, 7):
        assert S.count_paths(layers) == len(list(S.legal_paths(layers)))
    assert S.count_paths(12) == 75025
    # The paper's "2.9e4" network paths: the first layer fixed at downsample 4.
    assert S.count_paths(12, first_levels=(0,)) == 28657
