"""Decoding alpha/beta into genotypes: Viterbi = brute force, beta normalisation, cells."""

import math

import numpy as np
import pytest

from nasseg_tf.search_space import autodeeplab as S
from nasseg_tf.search.autodeeplab import decode as D
from nasseg_tf.search_space import genotypes as G
from nasseg_tf.search_space.autodeeplab import PRIMITIVES, ZERO_OP

OP = {op: index for index, op in enumerate(PRIMITIVES)}


def _cell(*blocks):
    return G.CellGenotype(tuple(tuple(G.Edge(op, source) for op, source in block)
                                for block in blocks))


# --------------------------------------------------------------------------------------
# Beta normalisation (paper eq. 7-8).


def test_beta_probabilities_sum_to_one_over_legal_outgoing_edges():
    rng = np.random.default_rng(0)
    betas = rng.normal(scale=3.0, size=(6, 4, 3))
    mask = S.legal_transition_mask(6)
    probs = D.beta_probabilities(betas)
    sources = mask.any(axis=2)
    np.testing.assert_allclose(probs.sum(axis=2)[sources], 1.0, rtol=1e-12)
    assert np.all(probs[~mask] == 0.0)
    assert np.all(probs[mask] > 0.0)
    # The stem: only betas[0, 0, 1:], nothing else at layer 0.
    assert probs[0, 0, S.UP] == 0.0 and np.all(probs[0, 1:] == 0.0)
    # Boundaries: level 0 never goes up, level 3 never goes down.
    assert np.all(probs[:, 0, S.UP] == 0.0) and np.all(probs[:, 3, S.DOWN] == 0.0)
    # Early layers: layer 0 has levels 0-1, layer 1 has levels 0-2.
    assert np.all(probs[1, 2:] == 0.0) and np.all(probs[2, 3] == 0.0)
    assert sources.sum() == 1 + 2 + 3 + 4 + 4 + 4


def test_boundary_nodes_renormalise_over_two_edges():
    probs = D.beta_probabilities(np.zeros((5, 4, 3)))
    np.testing.assert_allclose(probs[0, 0], [0, 0.5, 0.5])          # stem
    np.testing.assert_allclose(probs[4, 0], [0, 0.5, 0.5])          # level 0 (OS 4)
    np.testing.assert_allclose(probs[4, 3], [0.5, 0.5, 0])          # level 3 (OS 32)
    np.testing.assert_allclose(probs[4, 1], [1 / 3] * 3)            # interior


def test_illegal_beta_entries_are_ignored():
    rng = np.random.default_rng(1)
    betas = rng.normal(size=(5, 4, 3))
    noisy = betas.copy()
    illegal = ~S.legal_transition_mask(5)
    noisy[illegal] = rng.choice([1e6, -1e6, np.nan, np.inf], size=illegal.sum())
    np.testing.assert_array_equal(D.beta_probabilities(noisy), D.beta_probabilities(betas))
    assert D.viterbi_path(noisy) == D.viterbi_path(betas)


# --------------------------------------------------------------------------------------
# Viterbi.


@pytest.mark.parametrize("num_layers", range(1, 7))
def test_viterbi_equals_brute_force(num_layers):
    rng = np.random.default_rng(100 + num_layers)
    for _ in range(6):  # 36 random betas over L = 1..6
        betas = rng.normal(scale=2.0, size=(num_layers, 4, 3))
        path, log_p = D.viterbi_path(betas)
        assert (path, log_p) == D.brute_force_path(betas)
        assert log_p == pytest.approx(D.path_log_probability(betas, path), abs=1e-12)
        assert all(log_p >= D.path_log_probability(betas, other) - D.TIE_TOLERANCE
                   for other in S.legal_paths(num_layers))
        G.validate_path(list(path))
        assert all(isinstance(level, int) for level in path)


def test_viterbi_ties_go_to_the_lexicographically_smallest_path():
    # Uniform beta: from the stem, level 0 and 1 tie (1/2 each) ...
    assert D.viterbi_path(np.zeros((1, 4, 3)))[0] == (0,)
    # ... and so do (0, 0) and (0, 1): 1/2 * 1/2 each.
    zeros = np.zeros((2, 4, 3))
    assert D.path_log_probability(zeros, (0, 0)) == D.path_log_probability(zeros, (0, 1))
    assert D.viterbi_path(zeros)[0] == (0, 0)
    # Logits drawn from {0, 1, 2} give many exact ties; Viterbi still equals brute force.
    rng = np.random.default_rng(2)
    for num_layers in (2, 3, 4, 5, 6):
        for _ in range(4):
            betas = rng.integers(0, 3, size=(num_layers, 4, 3)).astype(float)
            assert D.viterbi_path(betas) == D.brute_force_path(betas)
            assert D.viterbi_path(betas) == D.viterbi_path(betas.copy())


def test_viterbi_path_is_always_legal_for_long_trellises():
    rng = np.random.default_rng(3)
    for num_layers in (12, 20):
        path, log_p = D.viterbi_path(rng.normal(scale=5.0, size=(num_layers, 4, 3)))
        G.validate_path(list(path))
        assert len(path) == num_layers and log_p <= 0.0


def test_brute_force_refuses_more_than_ten_layers():
    with pytest.raises(ValueError, match=r"L = 11 .*L <= 10"):
        D.brute_force_path(np.zeros((11, 4, 3)))


def test_bad_betas_and_paths_name_the_argument():
    with pytest.raises(ValueError, match=r"betas: expected shape \(L, 4, 3\).*\(12, 3, 3\)"):
        D.viterbi_path(np.zeros((12, 3, 3)))
    with pytest.raises(ValueError, match="betas: contains NaN"):
        D.beta_probabilities(np.full((2, 4, 3), np.nan))
    with pytest.raises(ValueError, match="path: has 2 levels but betas has L = 3"):
        D.path_log_probability(np.zeros((3, 4, 3)), (0, 1))
    with pytest.raises(G.GenotypeError, match=r"path\[0\]"):
        D.path_log_probability(np.zeros((2, 4, 3)), (2, 2))


# --------------------------------------------------------------------------------------
# Cells.


def test_decode_cell_keeps_two_strongest_edges_with_argmax_ops():
    alpha = np.zeros((9, len(PRIMITIVES)))  # B = 3
    alpha[0, OP["sep_conv_3x3"]] = 2.0                 # block 0 <- input 0
    alpha[1, OP["skip_connect"]] = 2.0                 # block 0 <- input 1
    alpha[2 + 0, OP["avg_pool_3x3"]] = 1.0             # block 1 <- input 0 (weaker)
    alpha[2 + 1, OP["atrous_conv_5x5"]] = 3.0          # block 1 <- input 1
    alpha[2 + 2, OP["sep_conv_5x5"]] = 2.5             # block 1 <- block 0
    alpha[5 + 3, OP["max_pool_3x3"]] = 2.0             # block 2 <- block 1
    alpha[5 + 0, OP["atrous_conv_3x3"]] = 2.0          # block 2 <- input 0
    alpha[5 + 0, OP["sep_conv_5x5"]] = 1.0
    assert D.decode_cell(alpha, num_blocks=3) == _cell(
        [("sep_conv_3x3", 0), ("skip_connect", 1)],
        [("atrous_conv_5x5", 1), ("sep_conv_5x5", 2)],
        [("atrous_conv_3x3", 0), ("max_pool_3x3", 3)])


def test_decode_cell_never_picks_none_even_where_it_dominates():
    # `none` has the largest logit on every edge; the kept edges are those where it
    # dominates least (largest non-zero softmax weight), each with its best real op.
    alpha = np.zeros((5, len(PRIMITIVES)))  # B = 2
    alpha[:, OP[ZERO_OP]] = 12.0
    alpha[0, [OP[ZERO_OP], OP["sep_conv_5x5"]]] = [5.0, 4.0]
    alpha[1, [OP[ZERO_OP], OP["skip_connect"]]] = [6.0, 4.0]
    alpha[2 + 2, [OP[ZERO_OP], OP["atrous_conv_3x3"], OP["avg_pool_3x3"]]] = [5.0, 4.0, 3.0]
    alpha[2 + 0, [OP[ZERO_OP], OP["max_pool_3x3"]]] = [5.0, 1.0]
    cell = D.decode_cell(alpha, num_blocks=2)
    assert cell == _cell([("sep_conv_5x5", 0), ("skip_connect", 1)],
                         [("max_pool_3x3", 0), ("atrous_conv_3x3", 2)])
    assert all(edge.op != ZERO_OP for block in cell.blocks for edge in block)


def test_decode_cell_ties_are_deterministic():
    # All equal: every block keeps inputs 0 and 1 with the first non-`none` op.
    cell = D.decode_cell(np.zeros((20, len(PRIMITIVES))))
    first_op = next(op for op in PRIMITIVES if op != ZERO_OP)
    assert cell == _cell(*[[(first_op, 0), (first_op, 1)]] * 5)


def test_decode_cell_orders_kept_edges_by_input():
    alpha = np.zeros((5, len(PRIMITIVES)))
    alpha[2 + 2, OP["sep_conv_3x3"]] = 5.0   # block 1 <- block 0, strongest
    alpha[2 + 0, OP["skip_connect"]] = 3.0   # block 1 <- input 0
    block = D.decode_cell(alpha, num_blocks=2).blocks[1]
    assert [edge.input for edge in block] == [0, 2]


def test_bad_alpha_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"alpha: expected shape \(20, 8\).*got \(14, 8\)"):
        D.decode_cell(np.zeros((14, 8)))
    with pytest.raises(ValueError, match="num_blocks"):
        D.decode_cell(np.zeros((20, 8)), num_blocks=0)
    with pytest.raises(ValueError, match="alpha: contains NaN"):
        D.decode_cell(np.full((20, 8), np.nan))


# --------------------------------------------------------------------------------------
# Published genotype round trip, encoding, entropies.


def test_encode_published_decodes_to_exactly_the_published_genotype():
    published = G.load_genotype("autodeeplab_cityscapes")
    alpha, betas = D.encode_published(published)
    assert alpha.shape == (20, len(PRIMITIVES)) and betas.shape == (12, 4, 3)
    decoded = D.decode_network(alpha, betas, name=published.name)
    assert decoded.path == published.path
    assert decoded.cell == D.canonical_cell(published.cell)
    for ours, theirs in zip(decoded.cell.blocks, published.cell.blocks):
        assert set(ours) == set(theirs)  # edge order within a block carries no meaning
    assert G.NetworkGenotype.from_json(decoded.to_json()) == decoded


def test_encode_recovers_random_genotypes_for_any_strength_above_ln2():
    rng = np.random.default_rng(4)
    for num_layers in (1, 5, 40):
        path = [int(rng.integers(0, 2))]
        for _ in range(num_layers - 1):
            path.append(int(np.clip(path[-1] + rng.integers(-1, 2), 0, 3)))
        cell = D.decode_cell(rng.normal(size=(20, len(PRIMITIVES))))
        genotype = G.NetworkGenotype(cell, tuple(path))
        for strength in (0.8, 4.0):
            alpha, betas = D.encode_published(genotype, strength=strength)
            assert D.decode_network(alpha, betas) == genotype
    with pytest.raises(ValueError, match="strength"):
        D.encode_published(genotype, strength=math.log(2.0))
    with pytest.raises(ValueError, match="num_blocks"):
        D.encode_published(genotype, num_blocks=4)


def test_entropies():
    assert D.alpha_entropy(np.zeros((20, 8))) == pytest.approx(math.log(8))
    assert D.alpha_entropy(np.eye(8)[np.arange(20) % 8] * 50.0) < 1e-15
    # L = 3: sources are the stem (2 edges), layer 0 levels 0-1 (2, 3 edges) and
    # layer 1 levels 0-2 (2, 3, 3 edges).
    expected = (3 * math.log(2) + 3 * math.log(3)) / 6
    assert D.beta_entropy(np.zeros((3, 4, 3))) == pytest.approx(expected)
    peaked = D.encode_published("autodeeplab_cityscapes", strength=20.0)[1]
    assert D.beta_entropy(peaked) < D.beta_entropy(np.zeros_like(peaked))
