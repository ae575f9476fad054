"""The Auto-DeepLab search cell with the edges leaving each state computed together.

:class:`BatchedSearchCell` computes **the same function** as
:class:`~nasseg_tf.search.autodeeplab.mixed_op.SearchCell` (the per-edge reference: one small layer
per edge and op, 140 op layers and 122 batch norms per cell at B = 5) with under a third
of the graph nodes (3.2k instead of 11.5k for one cell's forward + weight gradient),
which shortens the supernet's first call (tracing + graph building) and its steps on
CPU (SPEC §6). The trick is that all candidate ops on
the E edges *leaving* one state read the same tensor:

* ``max_pool_3x3``, ``avg_pool_3x3`` and ``skip_connect`` have no weights, so they are
  identical on every outgoing edge: computed **once** per state;
* ``atrous_conv_kxk`` on E edges = one regular conv with E·C output channels (the E
  kernels side by side);
* ``sep_conv_kxk`` (two repeats of ReLU → depthwise → pointwise → BN) on E edges: the
  first depthwise convs of all edges and both kernel sizes are ONE depthwise conv with
  channel multiplier 2·E on the shared input, the second ONE depthwise conv over the
  2·E·C channels (the 3×3 kernels zero-padded to 5×5 — the same "same"-padded conv —
  so that the two kernel sizes need no split), each followed by one **grouped** 1×1
  conv (one group per edge and kernel size: the block-diagonal pointwise convs, as
  one batched matmul). The 3×3 and 5×5 variants share the ReLU and the batch norm;
* batch norm is per channel, so one BN over the concatenated outputs of all ops of all
  edges equals one BN per op (same batch statistics, same moving statistics, γ/β per
  channel when affine).

The mixed-op weights are then applied per channel (α of edge e and op o broadcast over
that edge's C channels), the four conv ops of an edge are summed, and block i receives
its slice from every state j < i + 2. The weights have the per-edge cell's shapes
stacked along the edge axis and are initialised per edge with the same distribution
(He normal with the per-edge fan-in), so the two cells are interchangeable;
``tests/search/test_batched_cell.py`` checks the function (outputs, batch-norm updates,
gradients of weights and α) against the per-edge cell with the weights copied across.

**Saved activations.** The backward pass keeps, per state and in units of the state's
size, about 12·E tensors instead of the 19·E + 6 of the straightforward batched
cell: the first depthwise convs read the input directly (channel multiplier) instead
of an E-fold tiled copy and a concat of their outputs; the second need no split copy
(padded kernels); the last batch norm is folded into the mixed-op weights,
``Σ_o w_o·BN(y_o) = Σ_o y_o·(w_o·scale_o) + Σ_o w_o·shift_o``, so only its input (which
the statistics' gradient needs anyway) is kept, not also its normalised output; and the
free ops are weighted one by one, each product keeping a tensor that is kept anyway.
What remains is what the gradients need: the pointwise convs' inputs (2·E + 2·E), the
first batch norm's input and its ReLU's output (2·E + 2·E), the last batch norm's
input (4·E). Measured in ``bench/README.md``.

Weights of state j (``state{j}`` sub-layer; E = its number of outgoing edges, C = filters):

=========================  ======================  =========================================
weight                     shape                   edge e's part
=========================  ======================  =========================================
``sep{k}_depthwise0``      ``[k, k, C, E]``        ``[..., e]`` (channel multiplier E)
``sep{k}_depthwise1``      ``[k, k, E·C, 1]``      channels ``[e·C, (e+1)·C)``
``sep_pointwise{r}``       ``[2·E, C, C]``         group g = e (k=3), E + e (k=5)
``atrous{k}``              ``[k, k, C, E·C]``      output channels ``[e·C, (e+1)·C)``
``sep_bn0`` / ``bn``       ``2·E·C`` / ``4·E·C``   op-major, then edge, then channel
=========================  ======================  =========================================

**Search options that change the function** (both cells implement them, tested equal):

* ``partial_channels = K`` (PC-DARTS, Xu et al., ICLR 2020, §3.1): on every edge only
  the first C/K channels of the source state go through the candidate ops (built with
  C/K filters); the other C − C/K channels bypass them unweighted, and the edge's
  output is :func:`channel_shuffle` (K groups) of ``concat(mixed op, bypass)``. K = 1
  is the exact relaxed cell. The shuffle is a fixed permutation, so the batched cell
  sums the mixed parts and the bypasses of a block first and shuffles once per block.
  PC-DARTS' edge normalisation (a second set of per-edge weights) is not implemented:
  it would add an architecture variable that the decoder, the checkpoints and the cost
  model would all have to learn.
* ``atrous_op = 'dilated_separable'`` (DARTS' ``dil_conv_kxk``): the two atrous ops are
  searched as ReLU → depthwise k×k conv of rate 2 → pointwise 1×1 → BN instead of the
  official regular k×k conv; weights ``dil{k}_depthwise`` ``[k, k, C, E]`` and
  ``dil_pointwise`` ``[2·E, C, C]`` (group e for 3×3, E + e for 5×5) replace
  ``atrous{k}``. The decoded genotype names the same primitives; the derived models
  keep the regular atrous convs.
"""

import keras
from keras import ops

from nasseg_tf.layers.common import (BN_EPSILON, KERNEL_INITIALIZER, ConvBN,
                                     sync_batch_norm_enabled)
from nasseg_tf.layers.resize import resize_bilinear, spatial_size
from nasseg_tf.search_space import autodeeplab as space
from nasseg_tf.search_space.autodeeplab import NUM_BLOCKS, OP_TABLE, PRIMITIVES, ZERO_OP

#: Batch-norm momentum of the supernet (see :mod:`nasseg_tf.search.autodeeplab.supernet`).
SEARCH_BN_MOMENTUM = 0.9
#: The ops a search cell computes: every primitive except ``none``, in PRIMITIVES order.
SEARCH_OPS = tuple(op for op in PRIMITIVES if op != ZERO_OP)

# The layout below is derived from the op table (nasseg_tf.search_space.autodeeplab)
# and checked against it: the cell computes every separable op (any kernels), every
# atrous op (any kernels, one rate), the 3x3 max and average pools and the identity,
# and refuses to import if the table holds anything else.
_SEP_KERNELS = tuple(op.kernel for op in OP_TABLE if op.kind == "separable")
_ATROUS_KERNELS = tuple(op.kernel for op in OP_TABLE if op.kind == "atrous")
_CONV_OPS = tuple(op.name for op in OP_TABLE if op.kind == "separable") + tuple(
    op.name for op in OP_TABLE if op.kind == "atrous")
#: The free ops, in the order :meth:`StateEdges.call` stacks them.
_FREE_OPS = tuple(
    next(op.name for op in OP_TABLE if (op.kind, op.pool, op.kernel) == wanted)
    for wanted in (("pool", "max", 3), ("pool", "avg", 3), ("skip", None, 1)))
_ATROUS_RATES = {op.rate for op in OP_TABLE if op.kind == "atrous"}
if len(_ATROUS_RATES) != 1 or set(SEARCH_OPS) != set(_CONV_OPS + _FREE_OPS):
    raise ImportError(  # pragma: no cover - guards edits of the op table
        "batched_cell: the op table holds ops this cell does not compute: "
        f"{sorted(set(SEARCH_OPS) - set(_CONV_OPS + _FREE_OPS))}, atrous rates "
        f"{sorted(_ATROUS_RATES)}")
(_ATROUS_RATE,) = _ATROUS_RATES
#: How the search computes the atrous ops (``atrous_op``; see the module docstring).
ATROUS_OPS = ("regular", "dilated_separable")
#: Order of the op weights a :class:`StateEdges` takes: the conv ops, then the free ops.
STATE_OP_ORDER = _CONV_OPS + _FREE_OPS


def state_edges(num_blocks):
    """``{state: [(block, alpha row), ...]}`` of the edges leaving every source state.

    States are numbered as in the cell: 0 = H^{l-1}, 1 = H^{l-2}, 2 + k = block k.
    State j feeds blocks ``max(0, j - 1) .. num_blocks - 1``; the last block feeds
    nothing. Alpha rows follow :func:`~nasseg_tf.search.autodeeplab.space.cell_edge_index`.
    """
    rows = {edge: row for row, edge in enumerate(space.cell_edge_index(num_blocks))}
    return {state: [(block, rows[(block, state)])
                    for block in range(max(0, state - 1), num_blocks)]
            for state in range(num_blocks + 1)}


def stack_factor(h_prev, h_prev_prev):
    """How many stacked copies of the batch ``h_prev`` holds relative to ``h_prev_prev``."""
    n_prev, n_prev_prev = ops.shape(h_prev)[0], ops.shape(h_prev_prev)[0]
    if n_prev is None or n_prev_prev is None:  # symbolic call: shapes only
        return 1
    if isinstance(n_prev, int) and isinstance(n_prev_prev, int):
        if n_prev % n_prev_prev:
            raise ValueError(f"search cell: the batch of h_prev ({n_prev}) is not a "
                             f"multiple of the batch of h_prev_prev ({n_prev_prev})")
    return n_prev // n_prev_prev


def channel_shuffle(x, groups):
    """PC-DARTS' channel shuffle on the last axis: channel ``g·C/groups + i`` → ``i·groups + g``.

    The first C/groups channels (the partial mixed op's output) land on every
    ``groups``-th channel, the bypassed ones fill the gaps.
    """
    channels = int(x.shape[-1])
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels in {groups} groups")
    y = ops.reshape(x, (-1, groups, channels // groups))
    return ops.reshape(ops.transpose(y, (0, 2, 1)), ops.shape(x))


def check_search_options(filters, partial_channels, atrous_op):
    """Validates the options of the search cell; returns ``(partial_channels, atrous_op)``."""
    if (isinstance(partial_channels, bool) or int(partial_channels) != partial_channels
            or partial_channels < 1):
        raise ValueError(f"partial_channels: expected an int >= 1, got {partial_channels!r}")
    if filters % int(partial_channels):
        raise ValueError(f"partial_channels: {partial_channels} does not divide the "
                         f"cell's {filters} filters")
    if atrous_op not in ATROUS_OPS:
        raise ValueError(f"atrous_op: unknown {atrous_op!r}; known: {list(ATROUS_OPS)}")
    return int(partial_channels), atrous_op


def _edgewise(edge_shape, num_edges, axis, initializer=KERNEL_INITIALIZER):
    """An initializer that draws ``num_edges`` independent per-edge kernels and stacks them.

    Keras derives the fan-in from the shape it is given, so initialising the stacked
    kernel directly would shrink a depthwise kernel's scale by sqrt(E); drawing per edge
    keeps exactly the per-edge cell's distribution.
    """

    def initialize(shape, dtype=None):
        parts = [keras.initializers.get(initializer)(edge_shape, dtype=dtype)
                 for _ in range(num_edges)]
        value = ops.concatenate(parts, axis=axis)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"edgewise initializer: built {value.shape}, asked {shape}")
        return value

    return initialize


@keras.saving.register_keras_serializable(package="nasseg_tf")
class SearchBatchNorm(keras.layers.Layer):
    """Batch normalization over NHWC channels with few graph nodes.

    The same function and moving-statistics update as ``keras.layers.BatchNormalization``
    (batch mean and biased variance in training, ``moving = moving · momentum +
    batch · (1 - momentum)``; γ/β only when ``affine``), written directly in
    ``keras.ops``: about a third of the Keras layer's graph nodes, which matters with
    hundreds of batch norms in a traced supernet step. Statistics are computed in
    float32 under mixed precision. ``synchronized``: cross-replica statistics under a
    ``tf.distribute`` strategy (None: as :func:`~nasseg_tf.layers.common.
    synchronized_batch_norm` says when the layer is created).
    """

    def __init__(self, affine=False, momentum=SEARCH_BN_MOMENTUM, epsilon=BN_EPSILON,
                 synchronized=None, **kwargs):
        super().__init__(**kwargs)
        self.affine = bool(affine)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.synchronized = (sync_batch_norm_enabled() if synchronized is None
                             else bool(synchronized))

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.affine:
            self.gamma = self.add_weight(shape=(channels,), initializer="ones",
                                         name="gamma")
            self.beta = self.add_weight(shape=(channels,), initializer="zeros",
                                        name="beta")
        self.moving_mean = self.add_weight(shape=(channels,), initializer="zeros",
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(channels,), initializer="ones",
                                               trainable=False, name="moving_variance")
        self.built = True

    def normalizer(self, x, training=None):
        """``(scale, shift)``, float32 per channel, with ``BN(x) = x · scale + shift``.

        In training, the batch statistics of ``x`` (and the moving statistics are
        updated); otherwise the moving statistics. :class:`StateEdges` folds
        ``scale`` into the mixed-op weights, so the normalised tensor is never saved
        for the backward pass.
        """
        if training:
            # ops.moments is one fused squared difference on TensorFlow: unlike
            # mean(square(x - mean)) it keeps no centred copy of x alive for the
            # backward pass (one activation-sized tensor per batch norm).
            mean, variance = ops.moments(ops.cast(x, "float32"), axes=(0, 1, 2),
                                         synchronized=self.synchronized)
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep
                                    + ops.stop_gradient(mean) * (1.0 - keep))
            self.moving_variance.assign(self.moving_variance * keep
                                        + ops.stop_gradient(variance) * (1.0 - keep))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = ops.rsqrt(variance + self.epsilon)
        if self.affine:
            scale = scale * self.gamma
        shift = -mean * scale
        if self.affine:
            shift = shift + self.beta
        return scale, shift

    def call(self, x, training=None):
        scale, shift = self.normalizer(x, training)
        return ops.cast(ops.cast(x, "float32") * scale + shift, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(affine=self.affine, momentum=self.momentum, epsilon=self.epsilon,
                      synchronized=self.synchronized)
        return config


def _centred(kernel, size):
    """A ``[k, k, ...]`` kernel zero-padded to ``[size, size, ...]`` (odd sizes)."""
    pad = (size - int(kernel.shape[0])) // 2
    if not pad:
        return kernel
    return ops.pad(kernel, [[pad, pad], [pad, pad]] + [[0, 0]] * (len(kernel.shape) - 2))


def _batch_norm(name, affine, momentum, epsilon):
    return SearchBatchNorm(affine, momentum, epsilon, name=name)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class StateEdges(keras.layers.Layer):
    """Every candidate op on the ``num_edges`` edges leaving one cell state, at once.

    Call: ``layer(x, op_weights, training)`` with ``x`` ``[N, H, W, filters]`` and
    ``op_weights`` ``[7, num_edges]`` (softmaxed α of the edges, one row per op in
    :data:`STATE_OP_ORDER`) → ``num_edges`` tensors ``[N·H·W, filters]``
    (pixels flattened: the cell sums them per block and reshapes once), edge e's mixed
    op ``Σ_o op_weights[e, o] · O_o^{(e)}(x)``.
    """

    def __init__(self, filters, num_edges, affine=False, bn_momentum=SEARCH_BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, atrous_op="regular", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.num_edges = int(num_edges)
        _, self.atrous_op = check_search_options(self.filters, 1, atrous_op)
        self.affine = bool(affine)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.sep_bn0 = _batch_norm("sep_bn0", self.affine, self.bn_momentum,
                                   self.bn_epsilon)
        self.bn = _batch_norm("bn", self.affine, self.bn_momentum, self.bn_epsilon)
        self.max_pool = keras.layers.MaxPooling2D(3, strides=1, padding="same",
                                                  name="max_pool")
        self.avg_pool = keras.layers.AveragePooling2D(3, strides=1, padding="same",
                                                      name="avg_pool")

    def build(self, input_shape):
        c, e = self.filters, self.num_edges
        if input_shape[-1] is not None and int(input_shape[-1]) != c:
            raise ValueError(f"{self.name}: expected {c} input channels, "
                             f"got {input_shape[-1]}")
        # The first depthwise convs (and the dilated ones) read the shared input with
        # channel multiplier E ([k, k, C, E]: edge e's kernel is [..., e]); the second
        # read the edges' own channels ([k, k, E·C, 1], edge-major).
        self.sep_depthwise = {}
        for repeat in (0, 1):
            for k in _SEP_KERNELS:
                self.sep_depthwise[(repeat, k)] = self.add_weight(
                    shape=(k, k, c, e) if repeat == 0 else (k, k, e * c, 1),
                    name=f"sep{k}_depthwise{repeat}",
                    initializer=_edgewise((k, k, c, 1), e, axis=3 - repeat))
        groups = len(_SEP_KERNELS) * e
        self.sep_pointwise = [
            self.add_weight(shape=(groups, c, c), name=f"sep_pointwise{repeat}",
                            initializer=_edgewise((1, c, c), groups, axis=0))
            for repeat in (0, 1)]
        if self.atrous_op == "regular":
            self.atrous = {
                k: self.add_weight(shape=(k, k, c, e * c), name=f"atrous{k}",
                                   initializer=_edgewise((k, k, c, c), e, axis=3))
                for k in _ATROUS_KERNELS}
        else:
            self.dil_depthwise = {
                k: self.add_weight(shape=(k, k, c, e), name=f"dil{k}_depthwise",
                                   initializer=_edgewise((k, k, c, 1), e, axis=3))
                for k in _ATROUS_KERNELS}
            self.dil_pointwise = self.add_weight(
                shape=(len(_ATROUS_KERNELS) * e, c, c), name="dil_pointwise",
                initializer=_edgewise((1, c, c), len(_ATROUS_KERNELS) * e, axis=0))
        self.sep_bn0.build((None, None, None, len(_SEP_KERNELS) * e * c))
        self.bn.build((None, None, None, len(_CONV_OPS) * e * c))
        self.built = True

    def _fanned_out(self, x, depthwise, pointwise, rate=1):
        """Depthwise convs of every edge straight from the shared input, then the
        grouped pointwise: ``[N, H, W, C]`` → ``[N·H·W, groups, C]``.

        ``depthwise``: one ``[k, k, C, E]`` kernel per kernel size (channel multiplier
        E). They are joined into ONE depthwise conv with channel multiplier ``groups``
        (``[k_max, k_max, C, groups]``, the smaller kernels zero-padded to the largest,
        which is the same "same"-padded conv): its output, channel ``c·groups + g``,
        is the only activation the pointwise conv keeps for its backward pass — no
        tiled copy of the input and no concat of per-kernel outputs.
        """
        c, e = self.filters, self.num_edges
        size = max(int(kernel.shape[0]) for kernel in depthwise)
        kernels = [_centred(kernel, size) for kernel in depthwise]
        kernel = ops.concatenate(kernels, axis=-1) if len(kernels) > 1 else kernels[0]
        y = ops.depthwise_conv(x, kernel, strides=1, padding="same", dilation_rate=rate)
        groups = len(depthwise) * e
        return ops.einsum("pcg,gcd->pgd", ops.reshape(y, (-1, c, groups)), pointwise)

    def _grouped(self, x, depthwise, pointwise):
        """Per-group depthwise convs (one kernel per group of C channels, the kernel
        sizes zero-padded to the largest: one conv, no split) → grouped pointwise."""
        size = max(int(kernel.shape[0]) for kernel in depthwise)
        kernel = ops.concatenate([_centred(kernel, size) for kernel in depthwise], axis=2)
        y = ops.depthwise_conv(x, kernel, strides=1, padding="same")
        groups = len(depthwise) * self.num_edges
        # The block-diagonal pointwise convs as one batched matmul over the groups
        # (edge, kernel size). Keras' grouped ops.conv would do the same but routes
        # grouped convs through XLA on TensorFlow CPU: measured 1.8x slower steps and
        # +10 s first call on the supernet (65², F=4, L=4).
        return ops.einsum("pgc,gcd->pgd", ops.reshape(y, (-1, groups, self.filters)),
                          pointwise)

    def call(self, x, op_weights, training=None):
        c, e = self.filters, self.num_edges
        dtype = x.dtype
        op_weights = ops.cast(op_weights, dtype)
        shape = ops.shape(x)
        relu = ops.relu(x)
        sep = [self.sep_depthwise[(0, k)] for k in _SEP_KERNELS]
        y = self._fanned_out(relu, sep, self.sep_pointwise[0])
        y = ops.relu(self.sep_bn0(ops.reshape(y, shape[:3] + (-1,)), training=training))
        y = self._grouped(y, [self.sep_depthwise[(1, k)] for k in _SEP_KERNELS],
                          self.sep_pointwise[1])
        if self.atrous_op == "regular":
            atrous = [ops.reshape(ops.conv(relu, self.atrous[k], strides=1,
                                           padding="same", dilation_rate=_ATROUS_RATE),
                                  (-1, e, c))
                      for k in _ATROUS_KERNELS]
        else:  # edge-major [3x3 edges, 5x5 edges]: the regular branch's channel order
            atrous = [self._fanned_out(relu, [self.dil_depthwise[k] for k in _ATROUS_KERNELS],
                                       self.dil_pointwise, rate=_ATROUS_RATE)]
        # [pixels, op · edge, channel]: op-major, as the batch norm's channels.
        y = ops.concatenate([y] + atrous, axis=1)
        # Mixed op per edge: Σ_o w_o · BN(y_o) = Σ_o y_o · (w_o · scale_o) + Σ_o w_o ·
        # shift_o. Folding the batch norm's per-channel scale into the op weights
        # keeps only y (which the statistics' gradient needs anyway) for the backward
        # pass instead of y and its normalised copy.
        scale, shift = self.bn.normalizer(ops.reshape(y, shape[:3] + (-1,)),
                                          training=training)
        per_op = ops.reshape(op_weights, (len(STATE_OP_ORDER), e, 1))
        conv_weights, free_weights = ops.split(per_op, [len(_CONV_OPS)], axis=0)
        conv_shape = (len(_CONV_OPS), e, c)
        scaled = ops.cast(ops.reshape(scale, conv_shape), dtype) * conv_weights
        offset = ops.sum(ops.cast(ops.reshape(shift, conv_shape), dtype) * conv_weights,
                         axis=0)
        mixed = ops.sum(ops.reshape(y, (-1,) + conv_shape) * scaled, axis=1) + offset
        # The free ops one by one: each product keeps a tensor that is kept anyway
        # (the pools' outputs and x, which max pooling's gradient needs).
        for free, weight in zip((self.max_pool(x), self.avg_pool(x), x),
                                ops.unstack(free_weights, len(_FREE_OPS), axis=0)):
            mixed = mixed + ops.reshape(free, (-1, 1, c)) * weight
        return ops.unstack(mixed, e, axis=1)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        pixels = None if None in (n, h, w) else n * h * w
        return [(pixels, c)] * self.num_edges

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, num_edges=self.num_edges, affine=self.affine,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      atrous_op=self.atrous_op)
        return config


class SearchCellBase(keras.layers.Layer):
    """What both search-cell implementations share: arguments, preprocessing, config.

    The inputs are preprocessed as in the derived cell: H^{l-2} is resized bilinearly
    to H^{l-1}'s size when they differ, then each input goes through ReLU → 1×1 conv →
    BN to ``filters`` channels (``prev_1x1``, ``prev_prev_1x1``). ``h_prev`` may hold k
    stacked copies of the batch (batch k·N against N for ``h_prev_prev``): the
    preprocessed H^{l-2} is then tiled k times, matching
    ``concatenate([x_1, ..., x_k], axis=0)``. The output is the concat of the blocks:
    ``num_blocks · filters`` channels at H^{l-1}'s size. Subclasses build the edges in
    ``_build_edges`` / ``_edge_layers`` and compute the blocks in ``_blocks``.
    ``partial_channels`` and ``atrous_op`` are the search options of the module
    docstring (1 and ``'regular'``: the exact relaxed cell); the edge ops have
    ``op_filters = filters / partial_channels`` channels.
    """

    def __init__(self, filters, num_blocks=NUM_BLOCKS, affine=False,
                 bn_momentum=SEARCH_BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 partial_channels=1, atrous_op="regular", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.partial_channels, self.atrous_op = check_search_options(
            self.filters, partial_channels, atrous_op)
        self.op_filters = self.filters // self.partial_channels
        self.num_blocks = int(num_blocks)
        self.affine = bool(affine)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.num_edges = space.num_cell_edges(self.num_blocks)
        bn = self._bn_kwargs()
        self.preprocess_prev = ConvBN(self.filters, 1, pre_activation=True,
                                      post_activation=False, name="prev_1x1", **bn)
        self.preprocess_prev_prev = ConvBN(self.filters, 1, pre_activation=True,
                                           post_activation=False, name="prev_prev_1x1",
                                           **bn)
        self._build_edges()
        if not self.affine:
            for conv in (self.preprocess_prev, self.preprocess_prev_prev):
                conv.norm.center = conv.norm.scale = False

    def _bn_kwargs(self):
        return dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)

    def _build_edges(self):
        raise NotImplementedError

    def _edge_layers(self):
        raise NotImplementedError

    def _blocks(self, states, alpha_weights, training):
        """Appends the block outputs to ``states`` (two preprocessed inputs).

        ``alpha_weights``: the softmaxed α, ``[num edges, len(PRIMITIVES)]``.
        """
        raise NotImplementedError

    def build(self, input_shape):
        prev_shape, prev_prev_shape = (tuple(s) for s in input_shape)
        self.preprocess_prev.build(prev_shape)
        self.preprocess_prev_prev.build(prev_prev_shape)
        state_shape = tuple(prev_shape[:3]) + (self.op_filters,)
        for layer in self._edge_layers():
            layer.build(state_shape)
        self.built = True

    def call(self, inputs, alpha_weights, training=None):
        h_prev, h_prev_prev = inputs
        h_prev_prev = resize_bilinear(h_prev_prev, spatial_size(h_prev))
        states = [self.preprocess_prev(h_prev, training=training),
                  self.preprocess_prev_prev(h_prev_prev, training=training)]
        copies = stack_factor(h_prev, h_prev_prev)
        if not (isinstance(copies, int) and copies == 1):
            states[1] = ops.tile(states[1], (copies, 1, 1, 1))
        self._blocks(states, ops.cast(alpha_weights, states[0].dtype), training)
        return ops.concatenate(states[2:], axis=-1)

    def compute_output_shape(self, input_shape):
        prev_shape = tuple(input_shape[0])
        return prev_shape[:3] + (self.num_blocks * self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, num_blocks=self.num_blocks, affine=self.affine,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      partial_channels=self.partial_channels, atrous_op=self.atrous_op)
        return config


@keras.saving.register_keras_serializable(package="nasseg_tf")
class BatchedSearchCell(SearchCellBase):
    """The relaxed Auto-DeepLab cell (Liu et al. 2019, §3.1, §4.1), edges batched per state.

    Same arguments, call signature, preprocessing, batch-copy stacking and output as
    :class:`~nasseg_tf.search.autodeeplab.mixed_op.SearchCell` (see :class:`SearchCellBase`); see
    the module docstring for how the ops are grouped. Sub-layers ``state{j}``
    (:class:`StateEdges`) hold the ops on the edges leaving state j.
    """

    def _build_edges(self):
        self.edges = state_edges(self.num_blocks)
        self.states = [StateEdges(self.op_filters, len(self.edges[j]), affine=self.affine,
                                  atrous_op=self.atrous_op, name=f"state{j}",
                                  **self._bn_kwargs())
                       for j in range(self.num_blocks + 1)]

    def _edge_layers(self):
        return self.states

    def _block_output(self, mixed, bypassed, state_shape):
        """Block output from its incoming mixed ops (and, with partial channels, the
        bypassed channels: the shuffle is a permutation, so it is applied once to the
        sums instead of once per edge)."""
        total = _sum(mixed)
        if self.partial_channels > 1:
            total = channel_shuffle(ops.concatenate([total, _sum(bypassed)], axis=-1),
                                    self.partial_channels)
        return ops.reshape(total, state_shape)

    def _blocks(self, states, alpha_weights, training):
        incoming = [[] for _ in range(self.num_blocks)]
        bypassed = [[] for _ in range(self.num_blocks)]
        state_shape = ops.shape(states[0])
        # One gather arranges α for every state: [op (STATE_OP_ORDER), edge], the
        # edges grouped by source state; each state then takes a static column slice.
        rows = [row for j in range(self.num_blocks + 1) for _, row in self.edges[j]]
        flat = [row * len(PRIMITIVES) + PRIMITIVES.index(op)
                for op in STATE_OP_ORDER for row in rows]
        arranged = ops.reshape(ops.take(ops.reshape(alpha_weights, (-1,)), flat),
                               (len(STATE_OP_ORDER), len(rows)))
        first = 0
        for j in range(self.num_blocks + 1):
            if j >= 2:  # block j - 2 is complete: all its inputs are earlier states
                states.append(self._block_output(incoming[j - 2], bypassed[j - 2],
                                                 state_shape))
            blocks = [block for block, _ in self.edges[j]]
            x = states[j]
            if self.partial_channels > 1:
                x, rest = ops.split(x, [self.op_filters], axis=-1)
                rest = ops.reshape(rest, (-1, self.filters - self.op_filters))
                for block in blocks:
                    bypassed[block].append(rest)
            outputs = self.states[j](x, arranged[:, first:first + len(blocks)],
                                     training=training)
            first += len(blocks)
            for block, output in zip(blocks, outputs):
                incoming[block].append(output)
        states.append(self._block_output(incoming[-1], bypassed[-1], state_shape))


def _sum(tensors):
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total
