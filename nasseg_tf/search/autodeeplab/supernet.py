"""The Auto-DeepLab search supernet: relaxed cell and relaxed trellis, in ``keras.ops``.

Reference: Liu et al., "Auto-DeepLab: Hierarchical Neural Architecture Search for
Semantic Image Segmentation", CVPR 2019 — §3.1 (cell search space), §3.2 (network-level
search space, the trellis) and §4.1 (continuous relaxation: the cell's mixed ops and the
network's eq. 6–8). SPEC §2.1–2.3 restates the settings.

**Cell** (:class:`~nasseg_tf.search.autodeeplab.mixed_op.SearchCell`, paper §3.1/§4.1). B = 5 blocks; block i sums a mixed op
over *every* possible input — the two preprocessed cell inputs and blocks 0..i-1::

    H_i = Σ_{j < i+2} Σ_k softmax(α_{j→i})_k · O_k(H_j)

α has one row per edge (2 + 3 + 4 + 5 + 6 = 20, ordered as
:func:`~nasseg_tf.search_space.autodeeplab.cell_edge_index`) and one column per op of
:data:`~nasseg_tf.search_space.autodeeplab.PRIMITIVES`. α is shared by all cells of the
network, so it is *not* a weight of the cell: the cell is called with the already
softmaxed weights, ``cell([h_prev, h_prev_prev], alpha_weights)``. ``none`` contributes
exactly zero and is not computed (its softmax mass still counts in the normalisation).

**Trellis** (:class:`AutoDeepLabSupernet`, paper §3.2, eq. 6–8). After the stem (downsample
4) come L layers of up to 4 nodes at levels s = 0..3 (downsample 4·2^s); node (l, s)
exists iff s <= l + 1. Node (l, s) is (eq. 6)::

    H^l_s = Σ_{src ∈ {s+1, s, s-1}} p(l, src→s)
            · Cell_{l,s}(T_{src→s}(H^{l-1}_src), H^{l-2}_s)

with one cell (own weights) per node, missing neighbours dropped, and p the β logits
softmax-normalised over each source node's **legal outgoing** edges (eq. 7–8; layout and
boundary handling in :func:`transition_probabilities`, the one implementation of eq. 7–8:
``betas[l, src, k]`` is the edge from (l-1, src) to (l, src+k-1), the stem is layer -1 at
level 0, boundary nodes and the stem have 2 outgoing edges, illegal edges get 0; no
other constant enters). The weights p multiply the node's incoming cell outputs as they
are, so a node's incoming weights need not sum to 1 (the paper's formulation).

The resolution change T happens in the trellis, not in the cell (all cell ops have
stride 1):

* from the finer level s-1: ``down_{l}_{s}`` = ReLU → 3×3 conv stride 2 → BN, doubling
  the channels (B·F·2^{s-1} → B·F·2^s);
* from the coarser level s+1: bilinear upsampling to the level-s size, then ``up_{l}_{s}``
  = ReLU → 1×1 conv → BN (B·F·2^{s+1} → B·F·2^s);
* same level: identity.

**H^{l-2}_s, exactly.** The state of layer l-2 at the level *nearest* to s: node
(l-2, s) when it exists, otherwise (levels appear from the finest up, so a missing level
is coarser than all existing ones) the coarsest node of layer l-2. Layer -1 is the stem
output (level 0) and layer -2 is the stem's second conv (downsample 2), as cells 1 and 0
of the derived network (:mod:`nasseg_tf.models.autodeeplab`). The cell then resizes it
bilinearly to H^{l-1}'s size and projects it with its own ReLU → 1×1 conv → BN — the
same rule as the derived cell, so a derived path sees in the supernet exactly the
H^{l-2} it will see after decoding.

**Channels.** A node at level s outputs B·F·2^s channels (the cell has C = F·2^s filters
per block; F = 8 in the paper's search). The stem is the derived stem (64, 64, 128
filters).

**Heads** (paper §4.1, SPEC §2.2): one per level of the last layer (only the levels that
exist there when L < 3), ``head_{s}`` = ReLU → ASPP with three branches — 1×1 conv, ONE
3×3 conv of atrous rate 96 / (4·2^s) = 24, 12, 6, 3, image pooling — each with
B·F·2^s filters, then the ASPP's 1×1 projection (no dropout) and ``head_{s}_logits``
(1×1 conv with bias). Every head's logits are upsampled bilinearly to the input size and
the four are **summed**.

**Architecture variables.** α ``[20, 8]`` and β ``[L, 4, 3]`` logits, initialised
1e-3·N(0, 1) (SPEC §2.3), are variables of the model, ``model.arch_variables``. They are
trainable Keras variables (a gradient tape watches them, an optimiser under a
distribution strategy can update them) but are *not* for the weight optimiser: the
weight step must update ``model.weight_variables`` — every trainable variable except α
and β — never ``model.trainable_variables`` (which also holds α and β); the
architecture step updates ``model.arch_variables`` with its own optimiser (paper:
Adam). Entries of β on illegal edges never enter the network and get zero gradient.

**Batch norm in the search.** Every BN inside a :class:`SearchCell` (op BNs and the
two preprocessing BNs) is non-affine by default (``affine=False``: no γ/β), as in DARTS'
search: a learned per-op scale would compete with α and blur its meaning. The stem,
the trellis' down/up layers and the heads use ordinary affine BN. Batch-norm momentum
defaults to :data:`SEARCH_BN_MOMENTUM` = 0.9 (PyTorch's default 0.1 in Keras terms, which
the public PyTorch search ports keep; the paper does not state one) instead of the
retraining value 0.9997, so that the moving statistics of a short search are usable
when the supernet is evaluated in inference mode.

**Performance levers** (SPEC §6):

* ``stack_sources=True``: a node's up-to-3 (already resampled) sources share one cell,
  so they go through it ONCE, concatenated on the batch axis; H^{l-2} is preprocessed
  once and tiled to the stacked batch inside the cell; the result is split, weighted by
  β and summed. In inference mode this equals running the cell per source (tested). In
  training mode the cell's batch norms then normalise with statistics over the union of
  the sources (one larger batch) instead of per source, and update their moving
  statistics once per step instead of once per source.
* ``cell_type="batched"`` (default): the candidate ops on all edges leaving one cell
  state are computed together (:mod:`nasseg_tf.search.autodeeplab.batched_cell`): the same
  function as the per-edge :class:`SearchCell` with about a third of its graph nodes
  (``bench/README.md``).
* ``loop_layers=True`` (default): the trailing run of structurally identical trellis
  layers — layers 4..L-1, which see all four levels in both layer l-1 and layer l-2 —
  is traced ONCE, as the body of a loop (:func:`keras.ops.fori_loop`; a ``while`` loop
  on TensorFlow) over the layer index, instead of once per layer. Every layer keeps its
  own sub-layers and variables (same names and checkpoints as unrolled): each
  iteration runs layer 4's sub-layers in a :class:`keras.StatelessScope` that maps
  their variables to the current layer's (per-variable stacks of the layers' own
  variables, sliced by the loop index; gradients flow back to each layer's variables),
  and the batch-norm statistics updated in an iteration are carried out of the loop
  and assigned to that layer's variables. The same function as the unrolled trellis
  (tested: outputs, every gradient and every statistic, compiled and eager), with a
  graph that no longer grows with L past layer 4. ``node_outputs`` then lacks the
  nodes of layers 4..L-3 (they live inside the loop). It trades a shorter first call
  and less memory for a slower weight step at small crops (slicing the stacked weights
  and accumulating their gradients per iteration; figures in ``bench/README.md``): for
  long searches at small crops, unroll.
* ``remat=True`` wraps every cell call in :func:`keras.remat` (``tf.recompute_grad`` on
  TensorFlow): the cell's activations are recomputed in the backward pass. The cell
  runs statelessly inside (its variables are explicit inputs); the batch-norm
  statistics of the forward pass are assigned once, so a rematerialised supernet
  updates them exactly as a plain one (tested).

**Search options that change the function** (``partial_channels``, ``atrous_op``; both
cell types, see :mod:`~nasseg_tf.search.autodeeplab.batched_cell`): PC-DARTS' partial
channels (1/K of every state's channels through the ops, the rest bypassed, channel
shuffle) and DARTS' dilated separable conv in place of the regular atrous conv during
the search only. α, β, the decoder and the derived models are unchanged.

What each lever costs and saves is measured by ``tools/benchmark.py search``; the
records and their reading are in ``bench/README.md``.
"""

import keras
import numpy as np
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, ConvBN
from nasseg_tf.layers.heads import ASPP
from nasseg_tf.layers.resize import resize_bilinear, spatial_size
from nasseg_tf.search.autodeeplab.batched_cell import (SEARCH_BN_MOMENTUM, BatchedSearchCell,
                                                       check_search_options)
from nasseg_tf.search.autodeeplab.mixed_op import SearchCell
from nasseg_tf.search_space import autodeeplab as space
from nasseg_tf.search_space.autodeeplab import NUM_BLOCKS, NUM_LEVELS, PRIMITIVES

#: Atrous rate of a head's 3×3 branch times the level's downsample rate (96 / s).
HEAD_RATE_NUMERATOR = 96
#: Search-cell implementations: the same function, different graphs (see
#: :mod:`nasseg_tf.search.autodeeplab.batched_cell`). ``per_edge`` is the readable reference.
CELL_TYPES = {"batched": BatchedSearchCell, "per_edge": SearchCell}

#: Fewest identical trailing layers worth a loop (``loop_layers``; module docstring): a
#: loop of two layers lost on graph size and memory (``bench/README.md``).
MIN_LOOP_LAYERS = 3
#: Stem filters of the derived network (SPEC §2.5).
STEM_FILTERS = (64, 64, 128)


def _stateless(fn, variables):
    """``fn`` as a pure function of the values of the ``variables`` it reads.

    Returns ``(pure, stat_index)``: ``pure(values, *tensors)`` runs ``fn(*tensors)`` in
    a :class:`keras.StatelessScope` that reads ``variables[i]`` as ``values[i]`` and
    returns ``(fn's output, new values of the non-trainable variables)`` — the batch-norm
    statistics ``fn`` updated, as stop-gradient tensors, in the order of
    ``stat_index`` (their positions in ``variables``). Nothing is assigned.
    """
    stat_index = [i for i, v in enumerate(variables) if not v.trainable]

    def pure(values, *tensors):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            output = fn(*tensors)
            stats = tuple(ops.stop_gradient(scope.get_current_value(variables[i]))
                          for i in stat_index)
        return output, stats

    return pure, stat_index


def _rematerialised(fn, variables):
    """``fn`` with its activations recomputed in the backward pass (:func:`keras.remat`).

    ``fn`` reads ``variables``; they enter the rematerialised function as explicit
    inputs (so gradients reach them also when they are loop slices under a
    :class:`keras.StatelessScope`), and the function runs statelessly
    (:func:`_stateless`): the batch-norm statistics it updates are assigned once, after
    the forward pass — the recomputation in the backward pass updates nothing.
    """
    pure, stat_index = _stateless(fn, variables)
    num_variables = len(variables)

    def flat(*args):  # tf.recompute_grad wants tensors in, tensors out
        output, stats = pure(args[:num_variables], *args[num_variables:])
        return (output,) + stats

    def call(*tensors):
        output, *stats = keras.remat(flat)(*[v.value for v in variables], *tensors)
        for i, new in zip(stat_index, stats):
            variables[i].assign(new)
        return output

    return call




def transition_probabilities(betas):
    """β logits → transition probabilities in ``keras.ops`` (Liu et al. 2019, eq. 7–8).

    The one implementation of eq. 7–8 (the decoder and the pictures call it on numpy
    float64 values): a softmax over each existing source node's legal outgoing edges
    (:func:`~nasseg_tf.search_space.autodeeplab.legal_transition_mask`); illegal edges
    (and every edge of a nonexistent source) are exactly 0 and get no gradient. No
    other constant enters the normalisation: an interior node has 3 outgoing edges, a
    boundary node and the stem 2.

    Args:
      betas: logits ``[L, 4, 3]`` (a tensor or variable).

    Returns:
      ``[L, 4, 3]`` probabilities, differentiable w.r.t. the legal logits.
    """
    betas = ops.convert_to_tensor(betas)
    mask_np = space.legal_transition_mask(int(betas.shape[0]))
    mask = ops.convert_to_tensor(mask_np)
    has_edges = ops.convert_to_tensor(mask_np.any(axis=-1, keepdims=True))
    zeros = ops.zeros_like(betas)
    shift = ops.max(ops.where(mask, betas, ops.full_like(betas, -np.inf)), axis=-1,
                    keepdims=True)
    shift = ops.stop_gradient(ops.where(has_edges, shift, ops.zeros_like(shift)))
    exp = ops.where(mask, ops.exp(ops.where(mask, betas, zeros) - shift), zeros)
    total = ops.sum(exp, axis=-1, keepdims=True)
    return exp / ops.where(has_edges, total, ops.ones_like(total))


@keras.saving.register_keras_serializable(package="nasseg_tf")
class AutoDeepLabSupernet(keras.Model):
    """The Auto-DeepLab search network: relaxed trellis of search cells (Liu et al. 2019).

    See the module docstring for the exact formulation (eq. 6–8, H^{l-2} rule,
    resampling, heads, BN choices, performance levers).

    Args:
      num_classes: channels of the logits.
      num_layers: L (12 in the paper).
      filter_multiplier: F (8 in the paper's search); a node at level s has
        ``num_blocks · F · 2^s`` channels.
      num_blocks: B.
      stem_filters: filters of the three stem convs (the derived stem: 64, 64, 128).
      affine: learnable γ/β in the search cells' batch norms (default False).
      stack_sources: run a node's sources through its cell once, stacked on the batch
        axis (same function in inference mode; see the module docstring).
      remat: rematerialise every cell call in the backward pass (:func:`keras.remat`).
      cell_type: ``"batched"`` (default: the edges leaving a state computed together,
        :class:`~nasseg_tf.search.autodeeplab.batched_cell.BatchedSearchCell`) or ``"per_edge"``
        (:class:`SearchCell`, one layer per edge and op); the same function.
      loop_layers: trace the identical layers 4..L-1 once and loop over them (default;
        see the module docstring); False unrolls every layer. ``loop_start`` is the
        first looped layer (L when none is).
      min_loop_layers: loop only when at least this many layers are identical
        (default :data:`MIN_LOOP_LAYERS` = 3: the paper's L = 12 loops layers 4-11,
        L = 6 stays unrolled).
      arch_init_stddev: α and β start as ``arch_init_stddev · N(0, 1)`` (paper: 1e-3).
      seed: seed of the α/β initialisation (None: random).
      bn_momentum, bn_epsilon: batch-norm settings of the whole supernet.
      partial_channels: PC-DARTS' K (1, default: the exact relaxed cell); must divide
        ``filter_multiplier``. Changes the function (module docstring).
      atrous_op: ``'regular'`` (default) or ``'dilated_separable'``: how the search
        computes the atrous ops (module docstring).

    Sub-layers (stable names): ``stem_conv0..2``, ``cell_{l}_{s}``, ``down_{l}_{s}``,
    ``up_{l}_{s}`` (the transforms bringing node (l-1, s∓1) to node (l, s)), ``head_{s}``
    and ``head_{s}_logits``; s is the level 0..3 (downsample 4·2^s) throughout.

    Call: ``model(images, training)`` with images ``[N, H, W, 3]`` → logits
    ``[N, H, W, num_classes]`` (the sum of the per-level heads).
    """

    def __init__(self, num_classes, num_layers=12, filter_multiplier=8,
                 num_blocks=NUM_BLOCKS, stem_filters=STEM_FILTERS, affine=False,
                 stack_sources=True, remat=False, cell_type="batched",
                 loop_layers=True, min_loop_layers=MIN_LOOP_LAYERS,
                 arch_init_stddev=1e-3, seed=None,
                 bn_momentum=SEARCH_BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 partial_channels=1, atrous_op="regular", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_layers = int(num_layers)
        if self.num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        self.filter_multiplier = int(filter_multiplier)
        self.num_blocks = int(num_blocks)
        self.stem_filters = tuple(int(f) for f in stem_filters)
        if len(self.stem_filters) != 3:
            raise ValueError(f"stem_filters: expected 3 values, got {stem_filters}")
        self.affine = bool(affine)
        self.stack_sources = bool(stack_sources)
        self.remat = bool(remat)
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type: unknown {cell_type!r}; known: {sorted(CELL_TYPES)}")
        self.cell_type = cell_type
        self.loop_layers = bool(loop_layers)
        self.min_loop_layers = int(min_loop_layers)
        if self.min_loop_layers < 1:
            raise ValueError(f"min_loop_layers: expected >= 1, got {min_loop_layers}")
        self.arch_init_stddev = float(arch_init_stddev)
        self.seed = None if seed is None else int(seed)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.partial_channels, self.atrous_op = check_search_options(
            self.filter_multiplier, partial_channels, atrous_op)

        self._exists = space.node_exists_mask(self.num_layers)
        self._legal = space.legal_transition_mask(self.num_layers)
        self.loop_start = (self._find_loop_start() if self.loop_layers
                           else self.num_layers)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        f0, f1, f2 = self.stem_filters
        self.stem_conv0 = ConvBN(f0, 3, strides=2, name="stem_conv0", **bn)
        self.stem_conv1 = ConvBN(f1, 3, post_activation=False, name="stem_conv1", **bn)
        self.stem_conv2 = ConvBN(f2, 3, strides=2, post_activation=False,
                                 name="stem_conv2", **bn)

        self.cells, self.downs, self.ups = [], [], []
        self._cell_index, self._down_index, self._up_index = {}, {}, {}
        for layer, level in self.nodes():
            if self._source_is_legal(layer, level - 1, space.DOWN):
                self._down_index[(layer, level)] = len(self.downs)
                self.downs.append(ConvBN(
                    self.node_channels(level), 3, strides=2, pre_activation=True,
                    post_activation=False, name=f"down_{layer}_{level}", **bn))
            if self._source_is_legal(layer, level + 1, space.UP):
                self._up_index[(layer, level)] = len(self.ups)
                self.ups.append(ConvBN(
                    self.node_channels(level), 1, pre_activation=True,
                    post_activation=False, name=f"up_{layer}_{level}", **bn))
            self._cell_index[(layer, level)] = len(self.cells)
            self.cells.append(CELL_TYPES[self.cell_type](
                self.filter_multiplier * 2 ** level, self.num_blocks, affine=self.affine,
                partial_channels=self.partial_channels, atrous_op=self.atrous_op,
                name=f"cell_{layer}_{level}", **bn))

        self.head_levels = tuple(s for s in range(NUM_LEVELS)
                                 if self._exists[self.num_layers - 1, s])
        self.heads, self.classifiers = [], []
        for level in self.head_levels:
            rate = HEAD_RATE_NUMERATOR // (4 * 2 ** level)
            self.heads.append(ASPP(self.node_channels(level), atrous_rates=(rate,),
                                   image_pooling=True, dropout_rate=0.0,
                                   name=f"head_{level}", **bn))
            self.classifiers.append(keras.layers.Conv2D(
                self.num_classes, 1, use_bias=True, name=f"head_{level}_logits"))

        alpha_init = keras.initializers.RandomNormal(stddev=self.arch_init_stddev,
                                                     seed=self.seed)
        beta_init = keras.initializers.RandomNormal(
            stddev=self.arch_init_stddev, seed=None if self.seed is None else self.seed + 1)
        self.alpha = self.add_weight(
            shape=(space.num_cell_edges(self.num_blocks), len(PRIMITIVES)),
            initializer=alpha_init, trainable=True, name="alpha")
        self.beta = self.add_weight(
            shape=(self.num_layers, NUM_LEVELS, len(space.LEVEL_OFFSETS)),
            initializer=beta_init, trainable=True, name="beta")

    # ----------------------------------------------------------------------------------
    # Structure.

    def nodes(self):
        """The ``(layer, level)`` of every node, layer by layer, finer levels first."""
        return [(layer, level) for layer in range(self.num_layers)
                for level in range(NUM_LEVELS) if self._exists[layer, level]]

    def node_channels(self, level):
        """Output channels of a node at ``level``: B · F · 2^level."""
        return self.num_blocks * self.filter_multiplier * 2 ** level

    def _source_is_legal(self, layer, source, k):
        return 0 <= source < NUM_LEVELS and bool(self._legal[layer, source, k])

    def _sources(self, layer, level):
        """``(k, source level)`` of the legal edges into node (layer, level).

        In k order: UP (from the coarser level), SAME, DOWN (from the finer level).
        """
        candidates = ((space.UP, level + 1), (space.SAME, level),
                      (space.DOWN, level - 1))
        return [(k, source) for k, source in candidates
                if self._source_is_legal(layer, source, k)]

    def cell(self, layer, level):
        """The search cell of node (layer, level): ``cell_{layer}_{level}``."""
        return self.cells[self._cell_index[(layer, level)]]

    def _down(self, layer, level):
        return self.downs[self._down_index[(layer, level)]]

    def _up(self, layer, level):
        return self.ups[self._up_index[(layer, level)]]

    def _layer_channels(self, layer):
        """{level: channels} of the states of ``layer`` (-1: stem, -2: stem conv 1)."""
        if layer == -2:
            return {-1: self.stem_filters[1]}
        if layer == -1:
            return {0: self.stem_filters[2]}
        return {s: self.node_channels(s) for s in range(NUM_LEVELS)
                if self._exists[layer, s]}

    @staticmethod
    def _nearest_level(levels, level):
        """Of a layer's ``levels``, the one nearest to ``level`` (the H^{l-2} rule)."""
        return min(levels, key=lambda s: abs(s - level))

    def _nearest(self, states, level):
        """The state of a layer at the level nearest to ``level`` (the H^{l-2} rule)."""
        return states[self._nearest_level(states, level)]

    def _layer_signature(self, layer):
        """Everything that fixes the sub-layers and graph of trellis layer ``layer``."""
        prev_prev = self._layer_channels(layer - 2)
        nodes = tuple((level, tuple(self._sources(layer, level)),
                       self._nearest_level(prev_prev, level))
                      for level in range(NUM_LEVELS) if self._exists[layer, level])
        return (nodes, tuple(sorted(self._layer_channels(layer - 1).items())),
                tuple(sorted(prev_prev.items())))

    def _find_loop_start(self):
        """First layer of the longest run of identical layers ending at layer L-1.

        The run is looped (see the module docstring) when it has at least
        ``min_loop_layers`` layers; otherwise returns L (nothing looped). With all
        four levels from layer 2 on, layers 4..L-1 are identical (layer 3 still sees
        layer 1, which lacks level 3, as H^{l-2}).
        """
        last = self._layer_signature(self.num_layers - 1)
        start = self.num_layers - 1
        while start > 0 and self._layer_signature(start - 1) == last:
            start -= 1
        return (start if self.num_layers - start >= self.min_loop_layers
                else self.num_layers)

    def _layer_modules(self, layer):
        """The sub-layers of trellis layer ``layer``: its cells, then downs, then ups."""
        levels = [s for s in range(NUM_LEVELS) if self._exists[layer, s]]
        return ([self.cell(layer, s) for s in levels]
                + [self._down(layer, s) for s in levels if (layer, s) in self._down_index]
                + [self._up(layer, s) for s in levels if (layer, s) in self._up_index])

    def _layer_weights(self, layer):
        """All variables of trellis layer ``layer`` in a fixed order (same for twins)."""
        return [v for module in self._layer_modules(layer) for v in module.weights]

    def build(self, input_shape):
        n = input_shape[0]

        def shape(channels):
            return (n, None, None, channels)

        self.stem_conv0.build(shape(input_shape[-1]))
        self.stem_conv1.build(shape(self.stem_filters[0]))
        self.stem_conv2.build(shape(self.stem_filters[1]))
        for layer, level in self.nodes():
            previous = self._layer_channels(layer - 1)
            sources = self._sources(layer, level)
            for k, source in sources:
                if k == space.DOWN:
                    self._down(layer, level).build(shape(previous[source]))
                elif k == space.UP:
                    self._up(layer, level).build(shape(previous[source]))
            # Every source reaches the cell with the node's channels, except the stem
            # itself (node (0, 0)'s only source).
            k, source = sources[0]
            prev_channels = (previous[source] if k == space.SAME
                             else self.node_channels(level))
            prev_prev_channels = self._nearest(self._layer_channels(layer - 2), level)
            self.cell(layer, level).build([shape(prev_channels), shape(prev_prev_channels)])
        for level, head, classifier in zip(self.head_levels, self.heads, self.classifiers):
            head.build(shape(self.node_channels(level)))
            classifier.build(shape(head.filters))
        template = [tuple(v.shape) for v in self._loop_template()]
        for layer in range(self.loop_start + 1, self.num_layers):
            if [tuple(v.shape) for v in self._layer_weights(layer)] != template:
                raise RuntimeError(f"supernet: layer {layer} differs from layer "
                                   f"{self.loop_start}; cannot loop over them")
        self.built = True

    def _loop_template(self):
        """The variables of layer ``loop_start`` (empty when nothing is looped)."""
        if self.loop_start == self.num_layers:
            return []
        return self._layer_weights(self.loop_start)

    # ----------------------------------------------------------------------------------
    # Architecture parameters.

    @property
    def arch_variables(self):
        """``[alpha, beta]``: the architecture logits (for the architecture optimiser)."""
        return [self.alpha, self.beta]

    @property
    def weight_variables(self):
        """Every trainable variable except α and β (the network weights w)."""
        arch = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch]

    def alpha_weights(self):
        """softmax(α) over the ops of every edge, ``[20, 8]`` (paper §4.1)."""
        return ops.softmax(ops.convert_to_tensor(self.alpha), axis=-1)

    def transition_probabilities(self):
        """The β transition probabilities ``[L, 4, 3]`` (eq. 7–8; module docstring)."""
        return transition_probabilities(self.beta)

    # ----------------------------------------------------------------------------------
    # Forward.

    def _run_cell(self, cell, sources, weights, h_prev_prev, alpha_weights, training):
        """Σ_i weights[i] · cell([sources[i], h_prev_prev]) (eq. 6 for one node)."""

        def run(h_prev, h_pp, alpha_w):
            return cell([h_prev, h_pp], alpha_w, training=training)

        if self.remat:
            run = _rematerialised(run, cell.weights)
        if self.stack_sources and len(sources) > 1:
            stacked = run(ops.concatenate(sources, axis=0), h_prev_prev, alpha_weights)
            outputs = ops.split(stacked, len(sources), axis=0)
        else:
            outputs = [run(h, h_prev_prev, alpha_weights) for h in sources]
        total = None
        for weight, output in zip(weights, outputs):
            term = ops.cast(weight, output.dtype) * output
            total = term if total is None else total + term
        return total

    def _layer(self, layer, prev, prev_prev, layer_probs, alpha_weights, training):
        """The nodes ``{level: H}`` of trellis layer ``layer`` (eq. 6).

        ``prev`` / ``prev_prev`` are the states ``{level: H}`` of layers l-1 and l-2,
        ``layer_probs`` the ``[4, 3]`` transition probabilities into this layer.
        """
        current = {}
        for level in range(NUM_LEVELS):
            if not self._exists[layer, level]:
                continue
            sources, weights = [], []
            for k, source in self._sources(layer, level):
                h = prev[source]
                if k == space.DOWN:
                    h = self._down(layer, level)(h, training=training)
                elif k == space.UP:
                    # A coarser source implies the same-level source exists: its size.
                    h = resize_bilinear(h, spatial_size(prev[level]))
                    h = self._up(layer, level)(h, training=training)
                sources.append(h)
                weights.append(layer_probs[source, k])
            current[level] = self._run_cell(
                self.cell(layer, level), sources, weights,
                self._nearest(prev_prev, level), alpha_weights, training)
        return current

    def _looped_layers(self, prev, prev_prev, probs, alpha_weights, training):
        """Layers ``loop_start .. L-1`` as one loop over a single traced layer.

        The sub-layers of layer ``loop_start`` serve as the template: each iteration
        runs them in a :class:`keras.StatelessScope` whose variables are the current
        layer's (slices of per-variable stacks of the real variables, so gradients
        reach each layer's own variables). Batch-norm statistics updated in the
        iteration are carried out of the loop and assigned to the layer's own
        variables afterwards (training only). ``remat`` works per cell as in the other
        layers.

        Returns:
          ``(prev_prev, prev)``: the states of layers L-2 and L-1.
        """
        start = self.loop_start
        template = self._loop_template()
        per_layer = [self._layer_weights(layer) for layer in range(start, self.num_layers)]
        stacks = [ops.stack([weights[i].value for weights in per_layer])
                  for i in range(len(template))]
        levels = sorted(prev)
        loop_probs = probs[start:]
        num_loop_layers = self.num_layers - start

        step, stat_index = _stateless(
            lambda h_prev, h_prev_prev, layer_probs, alpha_w: self._layer(
                start, h_prev, h_prev_prev, layer_probs, alpha_w, training), template)

        def body(t, carry):
            h_prev, h_prev_prev, stats = carry
            current, new_stats = step([ops.take(stack, t, axis=0) for stack in stacks],
                                      dict(zip(levels, h_prev)),
                                      dict(zip(levels, h_prev_prev)),
                                      ops.take(loop_probs, t, axis=0), alpha_weights)
            current = tuple(current[s] for s in levels)
            if training:  # row t of each buffer := the new statistics
                is_t = ops.equal(ops.arange(num_loop_layers), t)
                stats = tuple(
                    ops.where(ops.reshape(is_t, (-1,) + (1,) * (len(buffer.shape) - 1)),
                              ops.expand_dims(new, 0), buffer)
                    for buffer, new in zip(stats, new_stats))
            return current, h_prev, stats

        initial_stats = tuple(stacks[i] for i in stat_index) if training else ()
        current, last_prev, stats = ops.fori_loop(
            0, num_loop_layers, body,
            (tuple(prev[s] for s in levels), tuple(prev_prev[s] for s in levels),
             initial_stats))
        if training:
            for buffer, i in zip(stats, stat_index):
                for t, weights in enumerate(per_layer):
                    weights[i].assign(buffer[t])
        return dict(zip(levels, last_prev)), dict(zip(levels, current))

    def node_outputs(self, images, training=None):
        """Runs the stem and the trellis; returns ``{(layer, level): H}`` of the nodes.

        ``(-1, 0)`` is the stem output and ``(-2, -1)`` the stem's second conv
        (downsample 2), the states that layers 0 and 1 use as H^{l-2}. When layers are
        looped (``loop_start < L``), the nodes of layers ``loop_start .. L-3`` are not
        materialised outside the loop and are missing from the result.
        """
        x = self.stem_conv0(images, training=training)
        stem1 = self.stem_conv1(x, training=training)
        stem = self.stem_conv2(ops.relu(stem1), training=training)
        outputs = {(-2, -1): stem1, (-1, 0): stem}
        alpha_weights = self.alpha_weights()
        probs = self.transition_probabilities()
        prev_prev, prev = {-1: stem1}, {0: stem}
        for layer in range(self.loop_start):
            current = self._layer(layer, prev, prev_prev, probs[layer], alpha_weights,
                                  training)
            outputs.update(((layer, level), h) for level, h in current.items())
            prev_prev, prev = prev, current
        if self.loop_start < self.num_layers:
            prev_prev, prev = self._looped_layers(prev, prev_prev, probs, alpha_weights,
                                                  training)
            for layer, states in ((self.num_layers - 2, prev_prev),
                                  (self.num_layers - 1, prev)):
                outputs.update(((layer, level), h) for level, h in states.items())
        return outputs

    def call(self, images, training=None):
        nodes = self.node_outputs(images, training=training)
        size = spatial_size(images)
        logits = None
        for level, head, classifier in zip(self.head_levels, self.heads, self.classifiers):
            y = head(ops.relu(nodes[(self.num_layers - 1, level)]), training=training)
            y = resize_bilinear(classifier(y), size)
            logits = y if logits is None else logits + y
        return logits

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.num_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, num_layers=self.num_layers,
            filter_multiplier=self.filter_multiplier, num_blocks=self.num_blocks,
            stem_filters=list(self.stem_filters), affine=self.affine,
            stack_sources=self.stack_sources, remat=self.remat, cell_type=self.cell_type,
            loop_layers=self.loop_layers, min_loop_layers=self.min_loop_layers,
            arch_init_stddev=self.arch_init_stddev, seed=self.seed,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
            partial_channels=self.partial_channels, atrous_op=self.atrous_op)
        return config
