"""The Auto-DeepLab search supernet: relaxed cell (§3.1/§4.1) and trellis (eq. 6–8).

Tiny shapes throughout (2 CPU cores): most trellis tests use a supernet of B = 2 blocks,
L = 3 layers, F = 2 — the trellis logic does not depend on B — and one test checks the
paper's B = 5 layout.
"""

import json
import subprocess
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_checks import mirrored_strategy, run_on_jax
from nasseg_tf.search_space import autodeeplab as S
from nasseg_tf.layers.resize import resize_bilinear, spatial_size
from nasseg_tf.search.autodeeplab import decode as D
from nasseg_tf.search.autodeeplab.mixed_op import SearchCell
from nasseg_tf.search.autodeeplab.batched_cell import SEARCH_OPS
from nasseg_tf.search.autodeeplab.supernet import (CELL_TYPES, AutoDeepLabSupernet,
                                                   transition_probabilities)
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, NetworkGenotype
from nasseg_tf.search_space.autodeeplab import PRIMITIVES

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

UP, SAME, DOWN = S.UP, S.SAME, S.DOWN
SMALL = dict(num_classes=3, num_layers=3, filter_multiplier=2, num_blocks=2, seed=0)


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype("float32")


def _alpha_weights(num_blocks, seed=0):
    rng = np.random.default_rng(seed)
    return _softmax(rng.normal(size=(S.num_cell_edges(num_blocks), len(PRIMITIVES))))


def _one_hot_alpha(num_blocks, op):
    weights = np.zeros((S.num_cell_edges(num_blocks), len(PRIMITIVES)), "float32")
    weights[:, PRIMITIVES.index(op)] = 1.0
    return weights


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _json(config):
    return json.dumps(config, sort_keys=True)


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol)


# --------------------------------------------------------------------------------------
# SearchCell.


def test_search_cell_shapes_config_and_gradients_for_weights_and_alpha():
    make = lambda: SearchCell(4, name="cell")  # noqa: E731  (B = 5: alpha is [20, 8])
    shapes = [(2, 9, 10, 12), (2, 17, 19, 20)]  # H^{l-2} finer: resized to H^{l-1}
    x = [_normal(s, i) for i, s in enumerate(shapes)]
    alpha = _alpha_weights(5)
    assert alpha.shape == (20, 8)

    symbolic = make()([keras.Input(batch_shape=(None,) + s[1:]) for s in shapes],
                      keras.Input(batch_shape=alpha.shape))
    assert tuple(symbolic.shape) == (None, 9, 10, 20)

    cell = make()
    y = cell(x, alpha, training=True)
    assert tuple(y.shape) == (2, 9, 10, 20)
    assert tuple(cell.compute_output_shape(shapes)) == (2, 9, 10, 20)
    # 20 edges × 7 ops (none is not built), named by block, input and op.
    assert len(cell.edge_ops) == 20 * 7 and "none" not in SEARCH_OPS
    assert cell.edge_ops[0].name == "block0_in0_max_pool_3x3"
    assert cell.edge_ops[-1].name == "block4_in5_atrous_conv_5x5"
    # Trainable weights: two 1×1 preprocessing kernels, then per edge sep 3×3 and 5×5
    # (2 × depthwise + pointwise), atrous 3×3 and 5×5 (regular C→C); pools, skip: none.
    per_edge = 2 * (9 * 4 + 16) + 2 * (25 * 4 + 16) + 9 * 16 + 25 * 16
    assert sum(int(np.prod(v.shape)) for v in cell.trainable_variables) == (
        12 * 4 + 20 * 4 + 20 * per_edge)

    config = cell.get_config()
    clone = SearchCell.from_config(config)
    assert _json(clone.get_config()) == _json(config)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell))
    assert type(restored) is SearchCell
    clone(x, alpha)
    clone.set_weights(cell.get_weights())
    _close(clone(x, alpha, training=False), cell(x, alpha, training=False))

    alpha_t = tf.constant(alpha)
    proj = tf.constant(_normal(y.shape, 9))
    with tf.GradientTape() as tape:
        tape.watch(alpha_t)
        loss = tf.reduce_sum(cell(x, alpha_t, training=True) * proj)
    grads = tape.gradient(loss, cell.trainable_variables + [alpha_t])
    for var, grad in zip(cell.trainable_variables, grads):
        assert grad is not None and np.all(np.isfinite(grad)), var.path
        assert np.any(np.asarray(grad) != 0), f"zero gradient for {var.path}"
    alpha_grad = np.asarray(grads[-1])
    assert np.all(np.isfinite(alpha_grad))
    none = PRIMITIVES.index("none")
    assert np.all(np.delete(alpha_grad, none, axis=1) != 0)  # every computed op matters
    assert np.all(alpha_grad[:, none] == 0)                   # none is never computed


def test_search_cell_is_the_alpha_weighted_sum_over_all_inputs():
    cell = SearchCell(3, num_blocks=3)
    x = [_normal((1, 6, 7, 5), 0), _normal((1, 6, 7, 8), 1)]
    skip = _one_hot_alpha(3, "skip_connect")
    y = np.asarray(cell(x, skip, training=False))
    s0 = np.asarray(cell.preprocess_prev(x[0], training=False))
    s1 = np.asarray(cell.preprocess_prev_prev(x[1], training=False))
    # skip_connect on every edge: each block sums ALL its inputs.
    b0 = s0 + s1
    b1 = s0 + s1 + b0
    b2 = s0 + s1 + b0 + b1
    _close(y, np.concatenate([b0, b1, b2], axis=-1), atol=1e-4)
    # Mixed weights: half skip, half none (none adds exactly zero).
    half = 0.5 * skip + 0.5 * _one_hot_alpha(3, "none")
    b0, b1 = 0.5 * (s0 + s1), 0.5 * (s0 + s1 + 0.5 * (s0 + s1))
    b2 = 0.5 * (s0 + s1 + b0 + b1)
    _close(cell(x, half, training=False), np.concatenate([b0, b1, b2], -1), atol=1e-4)
    assert not np.any(np.asarray(cell(x, _one_hot_alpha(3, "none"), training=False)))


def test_search_cell_tiles_prev_prev_for_sources_stacked_on_the_batch():
    cell = SearchCell(2, num_blocks=2)
    a, b = _normal((2, 5, 5, 4), 0), _normal((2, 5, 5, 4), 1)
    prev_prev = _normal((2, 9, 9, 3), 2)
    alpha = _alpha_weights(2)
    stacked = cell([np.concatenate([a, b]), prev_prev], alpha, training=False)
    separate = [cell([h, prev_prev], alpha, training=False) for h in (a, b)]
    _close(stacked, np.concatenate(separate))


@pytest.mark.parametrize("affine", [False, True])
def test_search_cell_batch_norms_follow_the_affine_flag(affine):
    cell = SearchCell(2, num_blocks=1, affine=affine)
    cell([np.zeros((1, 4, 4, 3), "float32")] * 2, _alpha_weights(1))
    names = {v.path.rsplit("/", 1)[-1] for v in cell.weights}
    assert ("gamma" in names) == affine and ("beta" in names) == affine
    assert "moving_mean" in names
    assert SearchCell.from_config(cell.get_config()).affine == affine


@pytest.mark.parametrize("cell_type", ["per_edge", "batched"])
def test_search_cell_step_under_mirrored_strategy(cell_type):
    strategy = mirrored_strategy()
    x = [_normal((2, 5, 5, 4), 0), _normal((2, 5, 5, 4), 1)]
    with strategy.scope():
        cell = CELL_TYPES[cell_type](2, num_blocks=2)
        cell(x, _alpha_weights(2))
        alpha = keras.Variable(np.zeros((5, 8), "float32"), name="alpha")
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(cell.trainable_variables + [alpha])
    variables = cell.trainable_variables + [alpha]
    before = [np.asarray(v).copy() for v in variables]

    @tf.function
    def step(inputs):
        def replica_fn(inputs):
            with tf.GradientTape() as tape:
                y = cell(inputs, keras.ops.softmax(alpha, axis=-1), training=True)
                loss = tf.reduce_sum(y * tf.sin(y))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss
        return strategy.run(replica_fn, args=(inputs,))

    step(x)
    after = [np.asarray(v) for v in variables]
    assert not np.array_equal(after[-1], before[-1])  # alpha moved
    assert sum(np.any(a != b) for a, b in zip(after, before)) == len(variables)


# --------------------------------------------------------------------------------------
# Supernet.


@pytest.fixture(scope="module")
def small():
    model = AutoDeepLabSupernet(**SMALL)
    model.build((2, 33, 33, 3))
    return model


def test_transition_probabilities_equal_decode_beta_probabilities():
    betas = np.random.default_rng(0).normal(scale=3.0, size=(5, 4, 3)).astype("float32")
    probs = np.asarray(transition_probabilities(betas))
    np.testing.assert_allclose(probs, D.beta_probabilities(betas), atol=1e-6)
    assert np.all(probs[~S.legal_transition_mask(5)] == 0)


def test_paper_layout_of_the_architecture_variables():
    model = AutoDeepLabSupernet(19, num_layers=2, filter_multiplier=8, seed=1)
    assert tuple(model.alpha.shape) == (20, 8) and tuple(model.beta.shape) == (2, 4, 3)
    assert model.arch_variables == [model.alpha, model.beta]
    for var in model.arch_variables:  # 1e-3 · N(0, 1)
        assert 0 < np.std(np.asarray(var)) < 3e-3
    assert model.node_channels(3) == 5 * 8 * 8
    assert [c.name for c in model.cells] == [
        "cell_0_0", "cell_0_1", "cell_1_0", "cell_1_1", "cell_1_2"]
    assert [layer.name for layer in model.downs] == ["down_0_1", "down_1_1", "down_1_2"]
    assert [layer.name for layer in model.ups] == ["up_1_0"]
    assert [h.name for h in model.heads] == ["head_0", "head_1", "head_2"]  # L < 3
    assert [h.atrous_rates for h in model.heads] == [(24,), (12,), (6,)]


@pytest.mark.parametrize("size", [33, 65])
def test_supernet_logits_have_the_input_size(small, size):
    logits = small(_normal((2, size, size, 3), size), training=False)
    assert tuple(logits.shape) == (2, size, size, 3)
    assert np.all(np.isfinite(logits))
    assert [h.filters for h in small.heads] == [4, 8, 16, 32]  # B·F·s/4 with B=2, F=2
    assert [h.atrous_rates for h in small.heads] == [(24,), (12,), (6,), (3,)]


def test_gradients_reach_alpha_beta_and_every_weight(small):
    x = _normal((2, 33, 33, 3), 0)
    proj = tf.constant(_normal((2, 33, 33, 3), 1))
    arch_ids = {id(v) for v in small.arch_variables}
    assert not arch_ids & {id(v) for v in small.weight_variables}
    assert len(small.weight_variables) + 2 == len(small.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(small(x, training=True) * proj)
    grads = tape.gradient(loss, small.arch_variables + small.weight_variables)
    alpha_grad, beta_grad = (np.asarray(g) for g in grads[:2])
    assert np.all(np.isfinite(alpha_grad)) and np.all(alpha_grad != 0)
    legal = S.legal_transition_mask(small.num_layers)
    assert np.all(np.isfinite(beta_grad))
    assert np.all(beta_grad[legal] != 0) and np.all(beta_grad[~legal] == 0)
    for var, grad in zip(small.weight_variables, grads[2:]):
        assert grad is not None and np.all(np.isfinite(grad)), var.path
        assert np.any(np.asarray(grad) != 0), f"zero gradient for {var.path}"


def test_stacked_and_unstacked_sources_agree_in_inference(small):
    config = small.get_config()
    clone = AutoDeepLabSupernet.from_config(config)
    assert _json(clone.get_config()) == _json(config)
    unstacked = AutoDeepLabSupernet.from_config({**config, "stack_sources": False})
    unstacked.build((2, 33, 33, 3))
    unstacked.set_weights(small.get_weights())
    x = _normal((2, 33, 33, 3), 3)
    _close(unstacked(x, training=False), small(x, training=False), atol=1e-4)


def test_nodes_are_beta_weighted_sums_of_their_cells(small):
    """Eq. 6 with eq. 7–8 weights, the resampling and the H^{l-2} rule, node by node."""
    small.beta.assign(np.random.default_rng(4).normal(size=(3, 4, 3)).astype("float32"))
    x = _normal((2, 33, 33, 3), 5)
    nodes = small.node_outputs(x, training=False)
    p = np.asarray(small.transition_probabilities())
    aw = small.alpha_weights()

    def cell(layer, level, h_prev, h_prev_prev):
        return small.cell(layer, level)([h_prev, h_prev_prev], aw, training=False)

    def up(layer, level, h, like):
        return small.get_layer(f"up_{layer}_{level}")(
            resize_bilinear(h, spatial_size(like)), training=False)

    def down(layer, level, h):
        return small.get_layer(f"down_{layer}_{level}")(h, training=False)

    stem1, stem = nodes[(-2, -1)], nodes[(-1, 0)]
    # Layer 0: one source each (the stem); H^{l-2} = the stem's second conv.
    _close(nodes[(0, 0)], p[0, 0, SAME] * cell(0, 0, stem, stem1))
    _close(nodes[(0, 1)], p[0, 0, DOWN] * cell(0, 1, down(0, 1, stem), stem1))
    h00, h01 = nodes[(0, 0)], nodes[(0, 1)]
    # Node (1, 0): same-level and coarser source; H^{l-2} = the stem.
    _close(nodes[(1, 0)], p[1, 0, SAME] * cell(1, 0, h00, stem)
           + p[1, 1, UP] * cell(1, 0, up(1, 0, h01, h00), stem))
    # Node (1, 2): only the finer source; H^{l-2} = the stem (nearest level of layer -1).
    _close(nodes[(1, 2)], p[1, 1, DOWN] * cell(1, 2, down(1, 2, h01), stem))
    # Node (2, 2): H^{l-2} = node (0, 1), the nearest level that exists in layer 0.
    h11, h12 = nodes[(1, 1)], nodes[(1, 2)]
    _close(nodes[(2, 2)], p[2, 1, DOWN] * cell(2, 2, down(2, 2, h11), h01)
           + p[2, 2, SAME] * cell(2, 2, h12, h01))


def test_beta_preferring_one_edge_gives_it_weight_one(small):
    x = _normal((2, 33, 33, 3), 6)
    betas = np.zeros((3, 4, 3), "float32")
    betas[1, 0] = [0.0, 30.0, -30.0]   # (0, 0) -> (1, 0) with probability ~1
    betas[1, 1] = [-30.0, 30.0, 0.0]   # (0, 1) -> (1, 0) with probability ~0
    small.beta.assign(betas)
    nodes = small.node_outputs(x, training=False)
    p = np.asarray(small.transition_probabilities())
    assert p[1, 0, SAME] == pytest.approx(1.0) and p[1, 1, UP] < 1e-12
    alone = small.cell(1, 0)([nodes[(0, 0)], nodes[(-1, 0)]], small.alpha_weights(),
                             training=False)
    _close(nodes[(1, 0)], alone, atol=1e-4)
    # Logits of illegal edges (off the trellis) change nothing.
    logits = small(x, training=False)
    betas[:, 0, UP] = 50.0
    betas[:, 3, DOWN] = 50.0
    betas[0, 1:] = 50.0   # sources that do not exist at layer -1
    small.beta.assign(betas)
    _close(small(x, training=False), logits, atol=1e-4)


def test_genotype_decodes_alpha_and_beta():
    model = AutoDeepLabSupernet(3, num_layers=4, filter_multiplier=2, num_blocks=2, seed=2)
    random_genotype = D.decode_supernet(model, name="random")
    assert isinstance(random_genotype, NetworkGenotype)
    assert random_genotype.validate() is random_genotype and len(random_genotype.path) == 4
    target = NetworkGenotype(
        CellGenotype(((Edge("sep_conv_3x3", 0), Edge("skip_connect", 1)),
                      (Edge("atrous_conv_5x5", 1), Edge("max_pool_3x3", 2)))), (1, 2, 2, 1))
    alpha, betas = D.encode_published(target, num_blocks=2)
    model.alpha.assign(alpha)
    model.beta.assign(betas)
    assert D.decode_supernet(model) == target


def _close_grads(grads_a, grads_b):
    """Gradients equal up to float32 reordering noise (relative to the largest one)."""
    scale = max(float(np.abs(g).max()) for g in grads_a)
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def _train_step(model, x, compiled):
    """Loss gradients of every trainable variable and the moving statistics after one
    training-mode step; the statistics are restored afterwards."""
    saved = [v.numpy() for v in model.non_trainable_variables]

    def step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.square(logits))
        return logits, tape.gradient(loss, model.trainable_variables)

    logits, grads = (tf.function(step) if compiled else step)()
    stats = [v.numpy() for v in model.non_trainable_variables]
    for v, value in zip(model.non_trainable_variables, saved):
        v.assign(value)
    return logits.numpy(), [g.numpy() for g in grads], stats


def test_remat_gives_the_same_gradients_and_statistics():
    # L = 6: layers 0-3 unrolled, 4-5 looped; remat covers both kinds of layer.
    # (Eager: the compiled loop is covered by test_looped_layers_equal_unrolled_layers.)
    config = dict(num_classes=2, num_layers=6, filter_multiplier=1, num_blocks=1, seed=3,
                  min_loop_layers=2)
    plain, rematerialised = (AutoDeepLabSupernet(**config),
                             AutoDeepLabSupernet(remat=True, **config))
    for model in (plain, rematerialised):
        model.build((2, 17, 17, 3))
    rematerialised.set_weights(plain.get_weights())
    x = _normal((2, 17, 17, 3), 7)
    a, b = _train_step(plain, x, False), _train_step(rematerialised, x, False)
    _close(a[0], b[0], atol=1e-4)
    _close_grads(a[1], b[1])
    # The recomputation in the backward pass updates no statistic: they move once.
    moved = [not np.allclose(s, v.numpy())
             for s, v in zip(a[2], plain.non_trainable_variables)]
    assert any(moved)
    for stats_a, stats_b in zip(a[2], b[2]):
        _close(stats_a, stats_b, atol=1e-5)


def test_identical_layers_are_looped():
    # Layers 4.. see full layers l-1 and l-2 (layer 3's H^{l-2}, layer 1, lacks level 3).
    # By default at least 3 of them (L >= 7); the tests below loop 2 (L = 6).
    for num_layers, start in ((3, 3), (5, 5), (6, 6), (7, 4), (12, 4)):
        assert AutoDeepLabSupernet(2, num_layers=num_layers, filter_multiplier=1,
                                   num_blocks=1).loop_start == start
    assert AutoDeepLabSupernet(2, num_layers=6, filter_multiplier=1, num_blocks=1,
                               min_loop_layers=2).loop_start == 4
    assert AutoDeepLabSupernet(2, num_layers=12, filter_multiplier=1, num_blocks=1,
                               loop_layers=False).loop_start == 12
    with pytest.raises(ValueError, match="min_loop_layers"):
        AutoDeepLabSupernet(2, num_layers=6, min_loop_layers=0)


@pytest.mark.parametrize("compiled,num_blocks", [
    (False, 2), pytest.param(True, 1, marks=pytest.mark.slow)])  # compiled: ~50 s
def test_looped_layers_equal_unrolled_layers(compiled, num_blocks):
    # The same model (same variables) run with layers 4-5 looped and unrolled. Fixed
    # initial weights: with some random draws a few gradients of this tiny, badly
    # conditioned net (F = 1) differ by ~1e-3 relative between the compiled loop and the
    # eager unrolled run (float32 summation order), which is noise, not a defect.
    keras.utils.set_random_seed(0)
    model = AutoDeepLabSupernet(3, num_layers=6, filter_multiplier=1,
                                num_blocks=num_blocks, seed=4, min_loop_layers=2)
    x = _normal((2, 17, 17, 3), 9)
    model.build(x.shape)
    assert model.loop_start == 4
    looped = _train_step(model, x, compiled)
    looped_inference = model(x, training=False).numpy()
    model.loop_start = model.num_layers
    unrolled = _train_step(model, x, False)  # eager: half the test's time
    _close(looped[0], unrolled[0], atol=1e-4)
    _close(looped_inference, model(x, training=False), atol=1e-4)
    names = [v.path for v in model.trainable_variables]
    _close_grads(looped[1], unrolled[1])
    # Each looped layer's own variables get their own (non-zero) gradients ...
    for layer in (4, 5):
        kernel = names.index(model.cell(layer, 3).weights[0].path)
        assert np.abs(looped[1][kernel]).max() > 0
    # ... and its own batch-norm statistics.
    stats_names = [v.path for v in model.non_trainable_variables]
    for name, stats_a, stats_b in zip(stats_names, looped[2], unrolled[2]):
        _close(stats_a, stats_b, atol=1e-5)
    before = {v.path: v.numpy() for v in model.non_trainable_variables}
    for layer in (4, 5):
        index = stats_names.index(model.cell(layer, 3).non_trainable_variables[0].path)
        assert not np.allclose(looped[2][index], before[stats_names[index]])


_JAX_SCRIPT = textwrap.dedent("""
    import os, sys, json
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, numpy as np
    from keras.src.backend import random as backend_random

    # The weights come from the TF model: skip random initialisation, which on JAX
    # compiles one program per variable shape (~25 s of the test otherwise).
    def _zeros(shape, *args, dtype=None, **kwargs):
        return np.zeros(shape, dtype or "float32")

    for name in ("normal", "truncated_normal", "uniform"):
        setattr(backend_random, name, _zeros)

    from nasseg_tf.search.autodeeplab.supernet import AutoDeepLabSupernet
    folder = sys.argv[1]
    with open(os.path.join(folder, "config.json")) as f:
        model = AutoDeepLabSupernet.from_config(json.load(f))
    x = np.load(os.path.join(folder, "x.npy"))
    model.build(x.shape)
    model.load_weights(os.path.join(folder, "model.weights.h5"))
    forward = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
        trainable, non_trainable, x, training=False)[0])
    y = forward([v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables], x)
    np.save(os.path.join(folder, "y.npy"), np.asarray(y))
""")


def test_jax_backend_forward_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    # L = 6: layers 4-5 run in the layer loop (fori_loop on JAX).
    model = AutoDeepLabSupernet(3, num_layers=6, filter_multiplier=1, num_blocks=1, seed=5,
                                min_loop_layers=2)
    x = _normal((1, 33, 33, 3), 8)
    model.build(x.shape)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "config.json").write_text(json.dumps(model.get_config()))
    try:
        result = run_on_jax(_JAX_SCRIPT, tmp_path, timeout=60, check=False,
                            capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.skip("JAX forward took over 60 s")
    assert result.returncode == 0, result.stderr[-3000:]
    _close(np.load(tmp_path / "y.npy"), model(x, training=False), atol=1e-4)


@pytest.mark.slow  # make test time (issue 13); run by make test-all
def test_looped_layers_under_mirrored_strategy():
    # Layers 4-5 looped: each replica slices the mirrored variables, and the moving
    # statistics assigned after the loop reach every looped layer's own variables.
    # (Forward only, to keep the test short: the gradient through the loop is the same
    # per replica as without a strategy, tested above.)
    strategy = mirrored_strategy()
    x = _normal((2, 17, 17, 3), 10)
    with strategy.scope():
        model = AutoDeepLabSupernet(2, num_layers=6, filter_multiplier=1, num_blocks=1,
                                    seed=6, min_loop_layers=2)
        model.build(x.shape)
    assert model.loop_start == 4
    before = [np.asarray(v).copy() for v in model.non_trainable_variables]
    expected = model(x, training=False).numpy()

    @tf.function
    def step(images):
        return strategy.run(lambda im: model(im, training=True), args=(images,))

    step(x)
    moved = {v.path for v, b in zip(model.non_trainable_variables, before)
             if np.any(np.asarray(v) != b)}
    for layer in (4, 5):
        for v in model.cell(layer, 0).non_trainable_variables:
            assert v.path in moved, v.path
    for v, b in zip(model.non_trainable_variables, before):
        v.assign(b)
    _close(tf.function(lambda im: strategy.run(
        lambda i: model(i, training=False), args=(im,)))(x).values[0], expected, atol=1e-4)
