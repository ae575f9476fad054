"""The paper's mixed op and the per-edge search cell built from it (the readable reference).

Reference: Liu et al., "Auto-DeepLab", CVPR 2019, §4.1 (continuous relaxation of the
cell, after DARTS): every edge j → i of a cell carries a **mixed op**

    Ō_{j→i}(H_j) = Σ_k softmax(α_{j→i})_k · O_k(H_j)

over the candidate ops of :data:`~nasseg_tf.search_space.autodeeplab.PRIMITIVES`
(``none`` contributes zero and is not computed; its softmax mass still counts in the
normalisation), and block i sums the mixed ops of all its inputs:
``H_i = Σ_{j < i+2} Ō_{j→i}(H_j)``.

:class:`SearchCell` writes that down literally — one :class:`MixedOp` per edge, one
small layer per edge and op. It is the reference the supernet's default cell,
:class:`~nasseg_tf.search.autodeeplab.batched_cell.BatchedSearchCell`, is tested
against (same weights, same outputs, gradients and batch-norm statistics), also
under the search options ``partial_channels`` and ``atrous_op`` (see
:mod:`~nasseg_tf.search.autodeeplab.batched_cell`).
"""

import keras
from keras import ops

from nasseg_tf.internals import flatten_layers
from nasseg_tf.layers.ops import DilatedSepConvOp, build_op
from nasseg_tf.search.autodeeplab.batched_cell import (SEARCH_OPS, SearchCellBase,
                                                       channel_shuffle)
from nasseg_tf.search_space import autodeeplab as space


def weighted_sum(outputs, weights):
    """``Σ_i weights[i] · outputs[i]`` as one stacked contraction (few graph nodes)."""
    return ops.tensordot(ops.stack(outputs, axis=-1), weights, axes=1)


def make_non_affine(layer):
    """Turns every (not yet built) BatchNormalization below ``layer`` into γ/β-free BN."""
    for sub in flatten_layers(layer, include_self=True):
        if isinstance(sub, keras.layers.BatchNormalization):
            if sub.built:
                raise RuntimeError(f"{sub.name}: batch norm already built")
            sub.center = False
            sub.scale = False


class MixedOp:
    """One edge of the relaxed cell: ``Σ_k w_k · O_k(x)`` (paper §4.1, DARTS' MixedOp).

    A plain callable over op layers that its cell owns (so the ops keep the cell's
    variable paths, ``block{i}_in{j}_{op}``).

    With ``partial_channels = K > 1`` (PC-DARTS, Xu et al. 2020, §3.1) the ops see only
    the first C/K channels of ``x`` (they are built with C/K filters); the other
    channels bypass them, and the output is ``channel_shuffle(concat(Σ_k w_k ·
    O_k(x[..., :C/K]), x[..., C/K:]), K)``.

    Args:
      candidate_ops: the op layers O_k, in :data:`SEARCH_OPS` order.
      partial_channels: K (1: every channel through the ops).
    """

    def __init__(self, candidate_ops, partial_channels=1):
        self.candidate_ops = tuple(candidate_ops)
        self.partial_channels = int(partial_channels)

    def __call__(self, x, weights, training=None):
        """``x``: the edge's input; ``weights``: ``[len(candidate_ops)]`` op weights."""
        k = self.partial_channels
        if k == 1:
            return weighted_sum([op(x, training=training) for op in self.candidate_ops],
                                weights)
        x, bypass = ops.split(x, [int(x.shape[-1]) // k], axis=-1)
        mixed = weighted_sum([op(x, training=training) for op in self.candidate_ops],
                             weights)
        return channel_shuffle(ops.concatenate([mixed, bypass], axis=-1), k)


@keras.saving.register_keras_serializable(package="nasseg_tf")
class SearchCell(SearchCellBase):
    """The continuous relaxation of the Auto-DeepLab cell, one :class:`MixedOp` per edge.

    Every block sums, over all its possible inputs j (0 = H^{l-1}, 1 = H^{l-2},
    2 + k = block k < i), the mixed op of the candidate ops of :data:`SEARCH_OPS`.
    Ops are built by :func:`~nasseg_tf.layers.ops.build_op` with stride 1 and named
    ``block{i}_in{j}_{op}``. The inputs are preprocessed as in the derived cell:
    H^{l-2} is resized bilinearly to H^{l-1}'s size when they differ, then each input
    goes through ReLU → 1×1 conv → BN to ``filters`` channels (``prev_1x1``,
    ``prev_prev_1x1``). The output is the concat of the blocks: ``num_blocks · filters``
    channels at H^{l-1}'s size.

    Args:
      filters: channels per block (C = F · 2^level in the supernet).
      num_blocks: B.
      affine: learnable γ/β in the cell's batch norms. Default False, as in DARTS'
        search: a per-op learned scale would compete with α.
      bn_momentum, bn_epsilon: batch-norm settings of every BN in the cell.
      partial_channels: K of :class:`MixedOp` (1: the exact relaxed cell).
      atrous_op: ``'regular'`` (the official atrous convs) or ``'dilated_separable'``
        (:class:`~nasseg_tf.layers.ops.DilatedSepConvOp` on the atrous edges).

    Call: ``cell([h_prev, h_prev_prev], alpha_weights, training)`` where
    ``alpha_weights`` is ``[num_cell_edges(num_blocks), len(PRIMITIVES)]`` of
    already-softmaxed op weights (rows ordered as
    :func:`~nasseg_tf.search_space.autodeeplab.cell_edge_index`). ``h_prev`` may hold k
    stacked copies of the batch (batch k·N against N for ``h_prev_prev``): the
    preprocessed H^{l-2} is then tiled k times, matching
    ``concatenate([x_1, ..., x_k], axis=0)``.
    """

    def _build_op(self, op, name):
        spec = space.OPS_BY_NAME[op]
        if spec.kind == "atrous" and self.atrous_op == "dilated_separable":
            return DilatedSepConvOp(self.op_filters, spec.kernel, rate=spec.rate,
                                    name=name, **self._bn_kwargs())
        return build_op(op, self.op_filters, 1, name=name, **self._bn_kwargs())

    def _build_edges(self):
        # Flat, edge-major then SEARCH_OPS order: edge e's ops are [7e, 7e + 7).
        self.edge_ops = [
            self._build_op(op, f"block{block}_in{source}_{op}")
            for block, source in space.cell_edge_index(self.num_blocks)
            for op in SEARCH_OPS
        ]
        if not self.affine:
            for op in self.edge_ops:
                make_non_affine(op)
        num_ops = len(SEARCH_OPS)
        self.mixed_ops = [MixedOp(self.edge_ops[e * num_ops:(e + 1) * num_ops],
                                  self.partial_channels)
                          for e in range(space.num_cell_edges(self.num_blocks))]

    def _edge_layers(self):
        return self.edge_ops

    def _blocks(self, states, alpha_weights, training):
        weights = ops.take(alpha_weights,
                           [space.PRIMITIVES.index(op) for op in SEARCH_OPS], axis=1)
        for block in range(self.num_blocks):
            first = space.block_offset(block)
            states.append(sum(
                self.mixed_ops[first + source](states[source], weights[first + source],
                                               training=training)
                for source in range(block + 2)))
