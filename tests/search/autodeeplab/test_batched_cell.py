"""BatchedSearchCell computes exactly the per-edge SearchCell's function (weights copied),
also under the search options (partial channels, dilated separable atrous op)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.search_space import autodeeplab as S
from nasseg_tf.internals import flatten_layers
from nasseg_tf.layers.cell import DerivedCell
from nasseg_tf.layers.ops import AtrousConvOp, DilatedSepConvOp
from nasseg_tf.search.autodeeplab import decode as D
from nasseg_tf.search.autodeeplab.supernet import AutoDeepLabSupernet
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, NetworkGenotype
from nasseg_tf.search.autodeeplab.batched_cell import BatchedSearchCell, StateEdges, state_edges
from nasseg_tf.search.autodeeplab.batched_cell import SEARCH_OPS, channel_shuffle
from nasseg_tf.search.autodeeplab.mixed_op import SearchCell
from nasseg_tf.search_space.autodeeplab import PRIMITIVES


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _alpha_weights(num_blocks, seed):
    logits = np.random.default_rng(seed).normal(size=(S.num_cell_edges(num_blocks),
                                                      len(PRIMITIVES)))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def _copy_per_edge_into_batched(per_edge, batched):
    """Moves every weight of the per-edge cell into its slot of the batched cell."""
    c = per_edge.op_filters
    dilated = per_edge.atrous_op == "dilated_separable"
    for name in ("preprocess_prev", "preprocess_prev_prev"):
        src, dst = getattr(per_edge, name), getattr(batched, name)
        dst.conv.kernel.assign(src.conv.kernel)
    ops_of = {}
    for row, (block, source) in enumerate(S.cell_edge_index(per_edge.num_blocks)):
        for k, op in enumerate(SEARCH_OPS):
            ops_of[(block, source, op)] = per_edge.edge_ops[row * len(SEARCH_OPS) + k]
    for j, edges in state_edges(per_edge.num_blocks).items():
        state = batched.states[j]
        e_count = len(edges)
        dw = {key: w.numpy() for key, w in state.sep_depthwise.items()}
        pw = [w.numpy() for w in state.sep_pointwise]
        if dilated:
            atrous = {k: w.numpy() for k, w in state.dil_depthwise.items()}
            dil_pw = state.dil_pointwise.numpy()
        else:
            atrous = {k: w.numpy() for k, w in state.atrous.items()}
        for e, (block, _) in enumerate(edges):
            for g, k in enumerate((3, 5)):
                sep = ops_of[(block, j, f"sep_conv_{k}x{k}")]
                group = g * e_count + e
                dw[(0, k)][..., e] = sep.convs[0].depthwise.kernel.numpy()[..., 0]
                dw[(1, k)][:, :, e * c:(e + 1) * c] = sep.convs[1].depthwise.kernel.numpy()
                for repeat in (0, 1):
                    pw[repeat][group] = sep.convs[repeat].conv.kernel.numpy()[0, 0]
                atrous_op = ops_of[(block, j, f"atrous_conv_{k}x{k}")]
                if dilated:
                    atrous[k][..., e] = atrous_op.conv.depthwise.kernel.numpy()[..., 0]
                    dil_pw[group] = atrous_op.conv.conv.kernel.numpy()[0, 0]
                else:
                    atrous[k][..., e * c:(e + 1) * c] = atrous_op.conv.conv.kernel.numpy()
        for key, value in dw.items():
            state.sep_depthwise[key].assign(value)
        for w, value in zip(state.sep_pointwise, pw):
            w.assign(value)
        for k, value in atrous.items():
            (state.dil_depthwise if dilated else state.atrous)[k].assign(value)
        if dilated:
            state.dil_pointwise.assign(dil_pw)


def _moving_stats(cell):
    """Per-variable sums of the cell's batch-norm moving statistics, sorted."""
    return sorted(float(np.sum(v.numpy())) for v in cell.non_trainable_variables)


@pytest.mark.parametrize("num_blocks,copies,c,options", [
    (5, 1, 3, {"partial_channels": 1}),  # K = 1 (the default): the exact cell
    (3, 3, 3, {}),
    # The search options, each against the per-edge reference with the same option.
    (3, 1, 4, {"partial_channels": 2}),
    (3, 2, 4, {"atrous_op": "dilated_separable"}),
    (2, 1, 6, {"partial_channels": 3, "atrous_op": "dilated_separable"})])
def test_batched_cell_equals_per_edge_cell(num_blocks, copies, c, options):
    per_edge = SearchCell(c, num_blocks, name="per_edge", **options)
    batched = BatchedSearchCell(c, num_blocks, name="batched", **options)
    h_prev = _normal((2 * copies, 7, 9, 5), 1)   # `copies` stacked copies of the batch
    h_prev_prev = _normal((2, 13, 17, 4), 2)      # finer: resized inside the cell
    alpha = tf.Variable(_alpha_weights(num_blocks, 3))
    per_edge([h_prev, h_prev_prev], alpha, training=False)
    batched([h_prev, h_prev_prev], alpha, training=False)
    # Same number of weights (the batched kernels are the per-edge ones side by side).
    assert (sum(int(np.prod(w.shape)) for w in per_edge.trainable_weights)
            == sum(int(np.prod(w.shape)) for w in batched.trainable_weights))
    _copy_per_edge_into_batched(per_edge, batched)

    np.testing.assert_allclose(batched([h_prev, h_prev_prev], alpha, training=False),
                               per_edge([h_prev, h_prev_prev], alpha, training=False),
                               rtol=1e-4, atol=1e-4)
    grads = []
    for cell in (per_edge, batched):
        with tf.GradientTape() as tape:
            y = cell([h_prev, h_prev_prev], alpha, training=True)
            loss = tf.reduce_sum(y * _normal(y.shape, 4))
        grads.append((y, tape.gradient(loss, [alpha] + cell.preprocess_prev.trainable_weights)))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-4)
    for got, want in zip(grads[1][1], grads[0][1]):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    alpha_grad = np.asarray(grads[1][1][0])  # gradients reach alpha (every edge row)
    assert np.all(np.isfinite(alpha_grad)) and np.all(np.abs(alpha_grad).sum(-1) > 0)
    # The batch norms saw the same statistics: every per-edge moving mean/var reappears.
    np.testing.assert_allclose(sum(_moving_stats(batched)), sum(_moving_stats(per_edge)),
                               rtol=1e-4)
    # And inference with the updated moving statistics agrees again.
    np.testing.assert_allclose(batched([h_prev, h_prev_prev], alpha, training=False),
                               per_edge([h_prev, h_prev_prev], alpha, training=False),
                               rtol=1e-4, atol=1e-4)


def test_weight_gradient_matches_the_per_edge_kernel_gradient():
    """A conv kernel's gradient lands in that edge's slice of the stacked kernel."""
    c, num_blocks = 2, 2
    per_edge, batched = SearchCell(c, num_blocks), BatchedSearchCell(c, num_blocks)
    x = [_normal((2, 6, 6, 3), 5), _normal((2, 6, 6, 3), 6)]
    alpha = _alpha_weights(num_blocks, 7)
    per_edge(x, alpha), batched(x, alpha)
    _copy_per_edge_into_batched(per_edge, batched)
    # Edge (block 1, source 2 = block 0): state 2's only edge; its atrous 5x5 kernel.
    row = S.cell_edge_index(num_blocks).index((1, 2))
    op = per_edge.edge_ops[row * len(SEARCH_OPS) + SEARCH_OPS.index("atrous_conv_5x5")]
    target = _normal((2, 6, 6, num_blocks * c), 8)
    with tf.GradientTape(persistent=True) as tape:
        loss_a = tf.reduce_sum(per_edge(x, alpha, training=True) * target)
        loss_b = tf.reduce_sum(batched(x, alpha, training=True) * target)
    want = tape.gradient(loss_a, op.conv.conv.kernel)
    got = tape.gradient(loss_b, batched.states[2].atrous[5])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    assert float(tf.reduce_max(tf.abs(want))) > 0


def test_state_edges_layout_and_errors():
    edges = state_edges(5)
    assert [len(edges[j]) for j in range(6)] == [5, 5, 4, 3, 2, 1]
    assert sum(len(v) for v in edges.values()) == S.num_cell_edges(5) == 20
    rows = sorted(row for v in edges.values() for _, row in v)
    assert rows == list(range(20))
    state = StateEdges(4, 3)
    with pytest.raises(ValueError, match="expected 4 input channels"):
        state.build((None, 8, 8, 5))
    # Per-edge initialisation: every edge's depthwise kernel has the per-edge He scale
    # (fan-in k·k·C... Keras counts a depthwise kernel's fan-in as k·k·C), not sqrt(E)
    # smaller.
    keras.utils.set_random_seed(0)
    wide = StateEdges(16, 8)
    wide.build((None, 8, 8, 16))
    std = float(np.std(wide.sep_depthwise[(0, 5)].numpy()))
    assert 0.7 * np.sqrt(2 / (25 * 16)) < std < 1.3 * np.sqrt(2 / (25 * 16))


def test_config_round_trip():
    cell = BatchedSearchCell(4, 3, affine=True, bn_momentum=0.8, name="c")
    clone = BatchedSearchCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()


def test_supernet_cell_types_have_the_same_weights_and_unknown_is_an_error():
    counts = []
    for cell_type in ("batched", "per_edge"):
        net = AutoDeepLabSupernet(3, num_layers=2, filter_multiplier=2, num_blocks=2,
                                  cell_type=cell_type)
        net.build((None, None, None, 3))
        assert isinstance(net.cell(1, 1), BatchedSearchCell) == (cell_type == "batched")
        counts.append(sum(int(np.prod(v.shape)) for v in net.weight_variables))
    assert counts[0] == counts[1]
    with pytest.raises(ValueError, match="known: \\['batched', 'per_edge'\\]"):
        AutoDeepLabSupernet(3, cell_type="fused")


def test_channel_shuffle_interleaves_the_groups():
    x = np.arange(12, dtype="float32").reshape(1, 1, 2, 6)
    y = np.asarray(channel_shuffle(x, 3))
    np.testing.assert_array_equal(y[0, 0, 0], [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(y[0, 0, 1], [6, 8, 10, 7, 9, 11])
    with pytest.raises(ValueError, match="6 channels in 4 groups"):
        channel_shuffle(x, 4)


@pytest.mark.parametrize("cell_cls", [SearchCell, BatchedSearchCell])
def test_partial_channels_bypass_is_the_shuffled_input(cell_cls):
    """With K = 2 only half the channels go through the ops (built with C/K filters);
    with all op weights zero, a block is exactly the shuffled bypassed input channels
    (the sum over its input states of their last C - C/K channels) and zeros."""
    c, k, num_blocks = 4, 2, 2
    cell = cell_cls(c, num_blocks, partial_channels=k)
    x = [_normal((2, 5, 6, 3), 11), _normal((2, 5, 6, 7), 12)]
    zero = np.zeros((S.num_cell_edges(num_blocks), len(PRIMITIVES)), "float32")
    y = np.asarray(cell(x, zero, training=False))
    assert y.shape == (2, 5, 6, num_blocks * c) and cell.op_filters == c // k
    edge_layers = cell.edge_ops if cell_cls is SearchCell else cell.states
    assert all(layer.filters == c // k for layer in edge_layers)
    s0 = np.asarray(cell.preprocess_prev(x[0], training=False))
    s1 = np.asarray(cell.preprocess_prev_prev(x[1], training=False))
    block0 = y[..., :c]
    bypass0 = s0[..., c // k:] + s1[..., c // k:]
    np.testing.assert_array_equal(block0[..., 0::k], 0.0)  # the (zero) mixed op
    np.testing.assert_allclose(block0[..., 1::k], bypass0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        block0, np.asarray(channel_shuffle(np.concatenate(
            [np.zeros_like(s0[..., :c // k]), bypass0], axis=-1), k)), atol=1e-6)
    # Block 1 reads block 0 as well: its bypass adds block 0's last C - C/K channels.
    block1 = y[..., c:]
    np.testing.assert_allclose(block1[..., 1::k], bypass0 + block0[..., c // k:],
                               rtol=1e-5, atol=1e-5)


def test_search_option_config_round_trip_and_errors():
    cell = BatchedSearchCell(4, 2, partial_channels=2, atrous_op="dilated_separable")
    assert BatchedSearchCell.from_config(cell.get_config()).get_config() == cell.get_config()
    edges = StateEdges(3, 2, atrous_op="dilated_separable")
    assert StateEdges.from_config(edges.get_config()).get_config() == edges.get_config()
    with pytest.raises(ValueError, match="partial_channels: 3 does not divide the cell's 4"):
        SearchCell(4, 2, partial_channels=3)
    with pytest.raises(ValueError, match="partial_channels: expected an int >= 1"):
        BatchedSearchCell(4, 2, partial_channels=0)
    with pytest.raises(ValueError, match="known: \\['regular', 'dilated_separable'\\]"):
        BatchedSearchCell(4, 2, atrous_op="dilated")


def test_supernet_search_options_train_and_decode_to_the_official_ops():
    """The options change the supernet's cells, not α, β, the decoder or the derived
    ops: a genotype encoded into α/β decodes back unchanged, and its derived cell uses
    the official regular atrous conv."""
    net = AutoDeepLabSupernet(3, num_layers=3, filter_multiplier=4, num_blocks=2,
                              partial_channels=2, atrous_op="dilated_separable", seed=1)
    x = _normal((2, 33, 33, 3), 13)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(net(x, training=True)))
    alpha_grad = tape.gradient(loss, net.alpha)
    assert net(x).shape == (2, 33, 33, 3)
    assert float(tf.reduce_max(tf.abs(alpha_grad))) > 0
    assert net.cell(2, 1).op_filters == 4 and net.cell(2, 1).atrous_op == "dilated_separable"
    clone = AutoDeepLabSupernet.from_config(net.get_config())
    assert clone.partial_channels == 2 and clone.atrous_op == "dilated_separable"
    with pytest.raises(ValueError, match="partial_channels: 3 does not divide"):
        AutoDeepLabSupernet(3, num_layers=2, filter_multiplier=4, partial_channels=3)

    target = NetworkGenotype(
        CellGenotype(((Edge("atrous_conv_5x5", 0), Edge("skip_connect", 1)),
                      (Edge("atrous_conv_3x3", 1), Edge("max_pool_3x3", 2)))), (1, 2, 1))
    net.alpha.assign(D.encode_published(target, num_blocks=2)[0])
    net.beta.assign(D.encode_published(target, num_blocks=2)[1])
    assert D.decode_supernet(net) == target
    derived = DerivedCell(target.cell, 4)
    derived([_normal((2, 9, 9, 8), 14), _normal((2, 9, 9, 8), 15)])
    layers = flatten_layers(derived)
    atrous = [layer for layer in layers if isinstance(layer, AtrousConvOp)]
    assert len(atrous) == 2 and not any(isinstance(layer, DilatedSepConvOp)
                                        for layer in layers)
    assert sorted(tuple(op.conv.conv.kernel.shape) for op in atrous) == [
        (3, 3, 4, 4), (5, 5, 4, 4)]


def test_the_cell_keeps_few_activations_for_its_backward_pass():
    # The saved-activation lever (module docstring): per state about 12·E tensors of the
    # state's size instead of 19·E + 6. Counted on the traced gradient graph, in units
    # of one state (batch x H x W x C floats); the straightforward batched cell (the
    # input tiled per edge, a split before the second depthwise conv, a normalised copy
    # kept for the mixed-op weights) measured 446 units here.
    from nasseg_tf.bench.search_bench import saved_for_backward  # pylint: disable=import-outside-toplevel
    n, size, c = 2, 16, 4
    cell = BatchedSearchCell(c, num_blocks=5, name="lean")
    spec = tf.TensorSpec((n, size, size, 5 * c), tf.float32)
    cell.build([spec.shape, spec.shape])
    alpha = tf.Variable(_alpha_weights(5, 0))

    def forward(h, h_pp):
        y = cell([h, h_pp], alpha, training=True)
        return tf.reduce_sum(y * y), cell.trainable_variables + [alpha]

    unit = n * size * size * c * 4
    saved = saved_for_backward(forward, spec, spec, min_bytes=unit)
    units = sum(saved.values()) / unit
    edges = S.num_cell_edges(5)  # 20
    assert 12 * edges <= units <= 12 * edges + 8 * 6 + 16, saved
