"""Tests of the random-architecture samplers (the Auto-DeepLab random baseline)."""

import collections
import itertools

import numpy as np
import pytest
from scipy import stats

from nasseg_tf.search_space import sampling
from nasseg_tf.search_space.autodeeplab import (count_paths, legal_paths,
                                                legal_transition_mask, transitions)
from nasseg_tf.search_space.genotypes import NetworkGenotype, load_genotype

#: A uniform sampler must not be rejected at this level; the biased control must be.
P_THRESHOLD = 1e-3


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4, 5, 6, 8])
def test_completion_counts_sum_to_the_enumerated_paths(num_layers):
    counts = sampling.completion_counts(num_layers)
    assert counts[0, 0] + counts[0, 1] == count_paths(num_layers)
    assert counts[0, 0] + counts[0, 1] == len(list(legal_paths(num_layers)))


def test_completion_counts_match_enumeration_from_every_node():
    num_layers = 6
    counts = sampling.completion_counts(num_layers)
    paths = list(legal_paths(num_layers))
    for layer in range(num_layers):
        for level in range(4):
            suffixes = {p[layer + 1:] for p in paths if p[layer] == level}
            assert counts[layer, level] == len(suffixes), (layer, level)


def test_sampled_paths_are_legal():
    rng = np.random.default_rng(0)
    legal = set(legal_paths(7))
    for _ in range(300):
        assert sampling.sample_path(rng, 7) in legal


def _chi_square_p(draws, num_layers):
    paths = list(legal_paths(num_layers))
    seen = collections.Counter(draws)
    assert set(seen) <= set(paths)
    observed = np.array([seen[p] for p in paths])
    return stats.chisquare(observed).pvalue  # expected: uniform over all legal paths


def _locally_uniform_path(rng, num_layers):
    """A biased control: each next level uniform among the legal ones (not by count)."""
    mask = legal_transition_mask(num_layers)
    path, source = [], 0
    for layer in range(num_layers):
        targets = [t for _, t in transitions(mask, layer, source)]
        source = targets[int(rng.integers(len(targets)))]
        path.append(source)
    return tuple(path)


def test_path_sampling_is_uniform_over_all_legal_paths_chi_square():
    num_layers, draws = 4, 3400  # 34 legal paths, 100 expected draws each
    rng = np.random.default_rng(1234)
    counts = sampling.completion_counts(num_layers)
    p_uniform = _chi_square_p([sampling.sample_path(rng, num_layers, counts)
                               for _ in range(draws)], num_layers)
    assert p_uniform > P_THRESHOLD, p_uniform
    # Control: the same test rejects a sampler that is uniform per step, not per path.
    rng = np.random.default_rng(1234)
    p_biased = _chi_square_p([_locally_uniform_path(rng, num_layers)
                              for _ in range(draws)], num_layers)
    assert p_biased < P_THRESHOLD, p_biased


def test_sampled_cells_are_what_the_decoder_can_produce():
    rng = np.random.default_rng(3)
    for _ in range(200):
        cell = sampling.sample_cell(rng, 5)
        cell.validate()
        assert cell.num_blocks == 5
        for block in cell.blocks:
            inputs = [edge.input for edge in block]
            assert inputs[0] < inputs[1]  # two distinct inputs, canonical order
            assert all(edge.op != "none" for edge in block)


def test_cell_sampling_is_uniform_over_pairs_and_ops_chi_square():
    rng = np.random.default_rng(7)
    draws = [sampling.sample_cell(rng, 3).blocks[2] for _ in range(3000)]
    pairs = collections.Counter((a.input, b.input) for a, b in draws)
    expected_pairs = list(itertools.combinations(range(4), 2))
    assert set(pairs) == set(expected_pairs)
    assert stats.chisquare([pairs[p] for p in expected_pairs]).pvalue > P_THRESHOLD
    ops = collections.Counter(edge.op for block in draws for edge in block)
    assert set(ops) == set(sampling.DECODABLE_OPS)
    assert stats.chisquare([ops[o] for o in sampling.DECODABLE_OPS]).pvalue > P_THRESHOLD


def test_space_size_counts_cells_and_paths():
    assert sampling.num_cells(1) == 49
    assert sampling.num_cells(2) == 49 * 3 * 49
    assert sampling.num_architectures(12, 5) == sampling.num_cells(5) * 75025


def test_sample_distinct_never_repeats_and_excludes():
    searched = load_genotype("autodeeplab_cityscapes")
    drawn = sampling.sample_distinct(np.random.default_rng(0), 50, 12, 5, [searched])
    keys = [sampling.architecture_key(g) for g in drawn]
    assert len(set(keys)) == 50
    assert sampling.architecture_key(searched) not in keys
    for genotype in drawn:
        NetworkGenotype.from_json(genotype.to_json())  # the genotype's own checks


def test_sample_distinct_exhausts_a_tiny_space_without_repeats():
    total = sampling.num_architectures(1, 1)  # 49 cells x 2 paths
    drawn = sampling.sample_distinct(np.random.default_rng(5), total, 1, 1)
    assert len({sampling.architecture_key(g) for g in drawn}) == total == 98
    with pytest.raises(ValueError, match="holds only 97 more"):
        sampling.sample_distinct(np.random.default_rng(5), total, 1, 1, drawn[:1])


def test_same_seed_same_samples():
    a = sampling.sample_distinct(np.random.default_rng(9), 5, 4, 5)
    b = sampling.sample_distinct(np.random.default_rng(9), 5, 4, 5)
    assert [g.to_json() for g in a] == [g.to_json() for g in b]


def test_architecture_key_ignores_edge_order_and_name():
    genotype = load_genotype("autodeeplab_cityscapes")
    swapped = NetworkGenotype(
        type(genotype.cell)(tuple(block[::-1] for block in genotype.cell.blocks)),
        genotype.path, "other")
    assert sampling.architecture_key(swapped) == sampling.architecture_key(genotype)
