"""The expected cost of the derived network under α and β (issue 15, item 2)."""

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.search.autodeeplab import cost, decode
from nasseg_tf.search_space.autodeeplab import (PRIMITIVES, block_offset, legal_transition_mask,
                                                num_cell_edges)
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, NetworkGenotype, load_genotype

#: A cell with every kind of op, skip and pools on cell inputs (strided in down-steps).
MIXED_CELL = CellGenotype((
    (Edge("skip_connect", 0), Edge("max_pool_3x3", 1)),
    (Edge("avg_pool_3x3", 0), Edge("sep_conv_5x5", 2)),
    (Edge("atrous_conv_3x3", 1), Edge("skip_connect", 3)),
    (Edge("sep_conv_3x3", 0), Edge("skip_connect", 1)),
    (Edge("atrous_conv_5x5", 2), Edge("max_pool_3x3", 5)),
))


def _concentrated(genotype):
    return decode.encode_published(genotype, strength=30.0)


@pytest.mark.parametrize("cell, path, size, heads", [
    # The published cell, a path that steps down twice (from the first layer at OS 4).
    (load_genotype("autodeeplab_cityscapes").cell, (0, 0, 1, 2), (65, 65), 256),
    # Every op kind; the first layer at OS 8, then down, up, up (odd, non-square input);
    # the demo retrain's 64-filter heads.
    (MIXED_CELL, (1, 2, 1, 0), (33, 57), 64),
])
def test_concentrated_expected_cost_equals_the_counter(cell, path, size, heads):
    genotype = NetworkGenotype(cell, path, "t").validate()
    model = cost.DerivedCostModel(len(path), 4, size, num_classes=3, aspp_filters=heads,
                                  decoder_filters=heads)
    expected = float(model.expected_madds(*_concentrated(genotype)))
    assert expected == pytest.approx(model.count(genotype), rel=1e-4)


def test_expected_cost_separates_paths_and_cells():
    """Coarser paths and cheaper ops cost less; the analytic model sees both."""
    model = cost.DerivedCostModel(4, 4, (64, 64), num_classes=3)
    published = load_genotype("autodeeplab_cityscapes").cell

    def madds(cell, path):
        return float(model.expected_madds(*_concentrated(NetworkGenotype(cell, path))))

    assert madds(published, (0, 0, 0, 0)) > madds(published, (1, 2, 3, 3))
    pools = CellGenotype(tuple((Edge("max_pool_3x3", 0), Edge("avg_pool_3x3", 1))
                               for _ in range(5)))
    assert madds(pools, (0, 0, 0, 0)) < madds(published, (0, 0, 0, 0))


def test_gradients_reach_alpha_and_the_legal_betas():
    rng = np.random.default_rng(0)
    alpha = tf.Variable(rng.normal(0, 1e-3, (num_cell_edges(5), len(PRIMITIVES))),
                        dtype=tf.float32)
    betas = tf.Variable(rng.normal(0, 1e-3, (4, 4, 3)), dtype=tf.float32)
    model = cost.DerivedCostModel(4, 4, (48, 48), num_classes=3)
    with tf.GradientTape() as tape:
        expected = model.expected_madds(alpha, betas)
    grad_alpha, grad_betas = (g.numpy() for g in tape.gradient(expected, [alpha, betas]))
    assert np.all(np.isfinite(grad_alpha)) and np.all(np.isfinite(grad_betas))
    nonzero_ops = [i for i, name in enumerate(PRIMITIVES) if name != "none"]
    # Every edge's non-zero ops move the cost (through q and through the strengths)...
    assert np.all(np.abs(grad_alpha[:, nonzero_ops]).sum(axis=1) > 0)
    mask = legal_transition_mask(4)
    # ...and so does every legal transition; the illegal entries never enter.
    assert np.all(grad_betas[mask] != 0)
    assert np.all(grad_betas[~mask] == 0)


def test_soft_top2_sums_to_two_and_becomes_the_decode_rule():
    rng = np.random.default_rng(1)
    alpha = rng.normal(0, 1.0, (num_cell_edges(5), len(PRIMITIVES))).astype(np.float32)
    weights = np.asarray(cost.edge_weights(alpha, 5, temperature=0.1))
    for block in range(5):
        row = weights[block_offset(block):block_offset(block) + block + 2]
        assert row.sum() == pytest.approx(2.0, abs=1e-5)
        assert np.all((row >= 0) & (row <= 1 + 1e-6))
    genotype = NetworkGenotype(MIXED_CELL, (0, 1, 2, 3))
    sharp = np.asarray(cost.edge_weights(_concentrated(genotype)[0], 5))
    kept = np.zeros_like(sharp)
    for block, edges in enumerate(MIXED_CELL.blocks):
        for edge in edges:
            kept[block_offset(block) + edge.input] = 1.0
    np.testing.assert_allclose(sharp, kept, atol=1e-3)  # e^{-(1 - 1/8)/τ} residue


def test_a_lower_target_drives_the_architecture_to_a_cheaper_decoded_network():
    """The cost term alone (Adam on α, β as in the search): below the starting cost, a
    target pulls the decoded network's cost down; above it, the term and its gradient
    are exactly 0 (so α, β keep their start and decode as the start does)."""
    model = cost.DerivedCostModel(4, 4, (48, 48), num_classes=3)
    rng = np.random.default_rng(2)
    alpha, betas = (tf.Variable(rng.normal(0, 1e-3, shape), dtype=tf.float32)
                    for shape in ((num_cell_edges(5), len(PRIMITIVES)), (4, 4, 3)))
    initial = float(model.expected_madds(alpha, betas))

    def decoded_cost():
        genotype = decode.decode_network(alpha.numpy(), betas.numpy())
        return float(model.expected_madds(*_concentrated(genotype)))

    with tf.GradientTape() as tape:
        penalty = cost.cost_penalty(model.expected_madds(alpha, betas), 2.0 * initial)
    assert float(penalty) == 0.0
    assert all(not np.any(g.numpy()) for g in tape.gradient(penalty, [alpha, betas]))
    high = decoded_cost()

    optimizer = tf.keras.optimizers.Adam(0.1)
    for _ in range(15):
        with tf.GradientTape() as tape:
            penalty = cost.cost_penalty(model.expected_madds(alpha, betas), 0.3 * initial)
        optimizer.apply_gradients(zip(tape.gradient(penalty, [alpha, betas]),
                                      [alpha, betas]))
    assert decoded_cost() < 0.7 * high


@pytest.mark.parametrize("form", sorted(cost.PENALTIES))
def test_penalty_is_zero_at_or_below_the_target_and_grows_above(form):
    values = [float(cost.cost_penalty(np.float32(e), 100.0, form)) for e in (50, 100, 150, 300)]
    assert values[0] == 0.0 and values[1] == 0.0 and 0 < values[2] < values[3]


@pytest.mark.parametrize("target, weight, form, field", [
    (-1.0, 1.0, "relative", "cost_target"), (1e6, -1.0, "relative", "cost_weight"),
    (1e6, 1.0, "square", "cost_penalty"), ("1e6", 1.0, "relative", "cost_target")])
def test_bad_settings_name_the_field(target, weight, form, field):
    with pytest.raises(ValueError, match=f"Search.{field}"):
        cost.check_settings(target, weight, form)


def test_a_trellis_without_the_decoder_cell_is_refused():
    with pytest.raises(ValueError, match="low_level_cell"):
        cost.DerivedCostModel(2, 4, (32, 32), num_classes=3)
