"""The expected Multiply-Adds of the derived network under α and β, in ``keras.ops``.

A cost-aware Auto-DeepLab search (issue 15; in the spirit of FasterSeg / ProxylessNAS,
which the paper does not do) adds to the architecture loss a penalty on the expected
cost of the network the search will *decode*. The cost is what the user will pay: the
Multiply-Adds of the derived model (:func:`nasseg_tf.models.zoo.build_autodeeplab`:
derived stem, derived cells on the path, ASPP and DeepLabv3+ decoder; SPEC §2.5), as
:func:`nasseg_tf.counting.count` counts them (convs and dense layers only; no BN,
activations, pooling, resizing or additions), for one image of ``input_size``.

**Cost model** (:class:`DerivedCostModel`; every term is the counter's figure for the
layer named, computed analytically here and tested equal to the counter on derived
networks). Sizes: ``P_s`` positions at level s (``ceil`` halvings of the input: two for
the stem, then one per level), ``C_s = F·2^s`` filters per block, ``ch_s = B·C_s``
channels of a cell output.

* Per-op cost on an edge of a cell at level s (output positions ``P_s``), the derived
  ops of :mod:`nasseg_tf.layers.ops`: ``sep_conv_kxk`` (two stacked separable convs)
  ``2·P_s·(k²·C_s + C_s²)``; ``atrous_conv_kxk`` (a regular k×k conv)
  ``P_s·k²·C_s²``; pools and ``none`` 0; ``skip_connect`` 0, except on an edge reading a
  cell input of a down-step cell (stride 2: a 1×1 conv) ``P_s·C_s²``. The stride of a
  down-step cell changes only that (its other strided ops also produce ``P_s``
  positions).
* A block's expected cost comes from its edges' op distributions, a soft version of the
  decode rule (top-2 edges by strength, argmax non-``none`` op; SPEC §2.4):

  - op distribution of an edge: ``q_e = softmax`` of α_e over the non-``none`` ops
    (the relaxation's own op weights renormalised without ``none``, which is never
    decoded);
  - edge weight ``w_e``: the probability that edge e is among the two edges drawn
    without replacement with probabilities ``π = softmax(σ / τ)`` over the block's
    edges, where ``σ_e = max_{k ≠ none} softmax(α_e)_k`` is the decode's edge strength
    and τ = ``edge_temperature``: ``w_e = π_e + Σ_{j≠e} π_j·π_e / (1 − π_j)``. The
    weights of a block sum to exactly 2 (a block always has two edges), and as α
    concentrates, ``w`` tends to 1 on the two strongest edges and 0 elsewhere.

  Expected cell ops: ``Σ_blocks Σ_e w_e·Σ_k q_e,k·cost_k``.
* Per cell the preprocessing: H^{l-1}'s ReLU → 1×1 conv (``in·ch_prev·C_s``) and
  H^{l-2}'s (``in·ch_prevprev·C_s``, only when its channels differ from ``C_s``), both
  at ``in = P_min(prev level, s)`` positions (the input level of a down-step cell; an
  up-step's upsampled input). Cell 0 reads the stem (128 ch) and the stem's second conv
  (64 ch), cell 1 the stem as H^{l-2}.
* Path probabilities: β's transition probabilities (eq. 7–8,
  :func:`~nasseg_tf.search.autodeeplab.supernet.transition_probabilities`) make the path
  a Markov chain from the stem; the forward recursion ``π_l = π_{l-1}·T_l`` gives the
  probability that the path visits node (l, s). Because a cell's preprocessing depends
  on the levels of layers l-2 and l-1 and its strides on l-1, each cell's cost is
  weighted by the joint probability of the levels at layers (l-2, l-1, l): the exact
  expectation of the derived network's cost under the path distribution, the cell
  taken as independent of the path (α is shared by all cells).
* Fixed parts: the stem (3 convs, constant); ASPP on the last cell (five branches of
  ``aspp_filters``: 1×1, three regular 3×3 atrous convs, image pooling's 1×1 conv at one
  position, then the 1×1 projection) weighted by ``π_{L-1}``; the decoder on cell
  ``low_level_cell`` (48-ch 1×1 projection, two regular 3×3 convs of 256, then the
  1×1 logits) weighted by the probability of that cell's level.

With α and β concentrated on one architecture (large logits) the expected cost equals
the counter's Multiply-Adds of that derived network (tested on several paths and cells).
The expectation is differentiable in α (through ``q`` and the edge strengths) and β.
"""

import dataclasses

import numpy as np
from keras import ops

from nasseg_tf.search.autodeeplab.supernet import STEM_FILTERS, transition_probabilities
from nasseg_tf.search_space import autodeeplab as space
from nasseg_tf.search_space.autodeeplab import (NUM_BLOCKS, NUM_LEVELS, OP_TABLE,
                                                PRIMITIVES, ZERO_OP, block_offset)

#: Channels of the derived decoder's low-level projection and ASPP's branch count.
LOW_LEVEL_FILTERS = 48
#: The derived network's decoder reads this cell (the zoo's ``low_level_cell``).
LOW_LEVEL_CELL = 2
NUM_ASPP_BRANCHES = 5
_NONZERO = [i for i, name in enumerate(PRIMITIVES) if name != ZERO_OP]
_SKIP = PRIMITIVES.index("skip_connect")


def _op_coefficients():
    """Per op: ``(a, b)`` with cost ``P·(a·C² + b·C)`` at stride 1 (module docstring)."""
    coefficients = []
    for op in OP_TABLE:
        if op.kind == "separable":
            coefficients.append((2.0, 2.0 * op.kernel ** 2))
        elif op.kind == "atrous":
            coefficients.append((float(op.kernel ** 2), 0.0))
        else:  # zero, pool, skip: no Multiply-Adds at stride 1
            coefficients.append((0.0, 0.0))
    return np.array(coefficients)


def _halve(size):
    return tuple((s + 1) // 2 for s in size)


def edge_weights(alpha, num_blocks=NUM_BLOCKS, temperature=0.1):
    """Soft top-2 weight of every cell edge (module docstring), ``[num_cell_edges]``.

    ``w_e`` is the probability that edge e is among two edges drawn without replacement
    from its block with probabilities ``softmax(σ / temperature)``, σ the decode's edge
    strengths. Each block's weights sum to 2.
    """
    weights = ops.softmax(ops.cast(alpha, "float32"), axis=-1)
    strengths = ops.max(ops.take(weights, _NONZERO, axis=1), axis=1)
    out = []
    for block in range(num_blocks):
        start = block_offset(block)
        pi = ops.softmax(strengths[start:start + block + 2] / temperature)
        # P(second draw = e | first = j) = π_e / (1 − π_j), 1 − π_j summed from the others.
        rest = ops.maximum(ops.sum(pi) - pi, 1e-12)
        second = pi * (ops.sum(pi / rest) - pi / rest)
        out.append(pi + second)
    return ops.concatenate(out, axis=0)


def op_distributions(alpha):
    """``q``: softmax of each edge's α over the non-``none`` ops, ``[edges, 8]`` (0 on
    ``none``)."""
    alpha = ops.cast(alpha, "float32")
    mask = np.array([name != ZERO_OP for name in PRIMITIVES])
    masked = ops.where(mask, alpha, ops.full_like(alpha, -1e9))
    return ops.where(mask, ops.softmax(masked, axis=-1), ops.zeros_like(alpha))


@dataclasses.dataclass(frozen=True)
class DerivedCostModel:
    """Expected Multiply-Adds of the derived Auto-DeepLab network (module docstring).

    Args:
      num_layers: L of the path.
      filter_multiplier: F of the derived network.
      input_size: ``(H, W)`` of the image.
      num_classes: logits channels.
      num_blocks: B.
      aspp_filters, decoder_filters: the derived heads (256 in the zoo).
      low_level_cell: the cell feeding the decoder (2 in the zoo).
      edge_temperature: τ of the soft top-2 (smaller: closer to the hard rule).
    """

    num_layers: int
    filter_multiplier: int
    input_size: tuple
    num_classes: int
    num_blocks: int = NUM_BLOCKS
    aspp_filters: int = 256
    decoder_filters: int = 256
    low_level_cell: int = LOW_LEVEL_CELL
    edge_temperature: float = 0.1

    def __post_init__(self):
        space.check_num_layers(self.num_layers)
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0
                                     for v in size):
            raise ValueError(f"input_size: expected (H, W) positive ints, got "
                             f"{self.input_size!r}")
        if not (isinstance(self.filter_multiplier, (int, np.integer))
                and self.filter_multiplier > 0):
            raise ValueError(f"filter_multiplier: expected a positive int, got "
                             f"{self.filter_multiplier!r}")
        if not 0 <= self.low_level_cell < self.num_layers:
            raise ValueError(f"low_level_cell={self.low_level_cell}: the derived decoder "
                             f"needs a cell of the {self.num_layers}-layer path")
        if not self.edge_temperature > 0:
            raise ValueError(f"edge_temperature must be > 0, got {self.edge_temperature}")

    def count(self, genotype):
        """The counter's Multiply-Adds of ``genotype``'s derived network (:func:`derived_madds`)."""
        return derived_madds(genotype, self.filter_multiplier, self.input_size,
                             self.num_classes, self.aspp_filters, self.decoder_filters)

    # ----------------------------------------------------------------------------------
    # Constant tables (numpy float64).

    def positions(self):
        """``{level: positions}`` for levels -1 (downsample 2) .. 3."""
        size = _halve(tuple(self.input_size))
        out = {-1: size[0] * size[1]}
        for level in range(NUM_LEVELS):
            size = _halve(size)
            out[level] = size[0] * size[1]
        return out

    def filters(self, level):
        return self.filter_multiplier * 2 ** level

    def channels(self, level):
        return self.num_blocks * self.filters(level)

    def stem_madds(self):
        p = self.positions()
        f0, f1, f2 = STEM_FILTERS
        return p[-1] * 9 * (3 * f0 + f0 * f1) + p[0] * 9 * f1 * f2

    def preprocess_table(self, layer):
        """``[4, 4, 4]``: preprocessing Multiply-Adds of cell ``layer`` by (level at
        l-2, level at l-1, level at l); index 0 stands for the stem's states where
        layer l-1 or l-2 is the stem."""
        p = self.positions()
        table = np.zeros((NUM_LEVELS,) * 3)
        for a in range(NUM_LEVELS):
            for b in range(NUM_LEVELS):
                for s in range(NUM_LEVELS):
                    c = self.filters(s)
                    ch_prev = STEM_FILTERS[2] if layer == 0 else self.channels(b)
                    ch_pp = {0: STEM_FILTERS[1], 1: STEM_FILTERS[2]}.get(
                        layer, self.channels(a))
                    positions = p[min(b, s)]
                    cost = positions * ch_prev * c
                    if ch_pp != c:
                        cost += positions * ch_pp * c
                    table[a, b, s] = cost
        return table

    def aspp_madds(self):
        """``[4]``: ASPP Multiply-Adds on a last cell at each level."""
        p, f = self.positions(), self.aspp_filters
        return np.array([p[s] * self.channels(s) * f * (1 + 3 * 9) + self.channels(s) * f
                         + p[s] * NUM_ASPP_BRANCHES * f * f for s in range(NUM_LEVELS)],
                        dtype=np.float64)

    def decoder_madds(self):
        """``[4]``: decoder + logits Multiply-Adds with the low-level cell at each level."""
        p, f = self.positions(), self.decoder_filters
        return np.array([p[s] * (self.channels(s) * LOW_LEVEL_FILTERS
                                 + 9 * (self.aspp_filters + LOW_LEVEL_FILTERS) * f
                                 + 9 * f * f + f * self.num_classes)
                         for s in range(NUM_LEVELS)], dtype=np.float64)

    # ----------------------------------------------------------------------------------
    # The expectation (keras.ops).

    def node_probabilities(self, betas):
        """``(marginals [L, 4], matrices [L, 4, 4])``: P(s_l = s), by the forward
        recursion ``π_l = π_{l-1}·T_l`` from the stem (level 0), and the transition
        matrices ``T_l[b, s]`` = P(s_l = s | s_{l-1} = b) (row 0 of ``T_0``: the stem)."""
        probs = transition_probabilities(betas)
        shift = np.zeros((len(space.LEVEL_OFFSETS), NUM_LEVELS, NUM_LEVELS), np.float32)
        for k, offset in enumerate(space.LEVEL_OFFSETS):
            for s in range(NUM_LEVELS):
                if 0 <= s + offset < NUM_LEVELS:
                    shift[k, s, s + offset] = 1.0
        matrices = ops.einsum("lsk,kst->lst", probs, shift)  # T_l[s, t]
        previous = ops.convert_to_tensor(np.eye(NUM_LEVELS, dtype=np.float32)[0])
        marginals = []
        for layer in range(self.num_layers):
            previous = ops.matmul(previous, matrices[layer])
            marginals.append(previous)
        return ops.stack(marginals), matrices

    def expected_madds(self, alpha, betas):
        """E[Multiply-Adds] of the derived network under α ``[edges, 8]`` and β
        ``[L, 4, 3]`` logits: a scalar tensor, differentiable in both."""
        alpha = ops.cast(alpha, "float32")
        betas = ops.cast(betas, "float32")
        if tuple(betas.shape) != (self.num_layers, NUM_LEVELS, len(space.LEVEL_OFFSETS)):
            raise ValueError(f"betas: expected shape ({self.num_layers}, {NUM_LEVELS}, 3), "
                             f"got {tuple(betas.shape)}")
        weights = edge_weights(alpha, self.num_blocks, self.edge_temperature)
        q = op_distributions(alpha)
        coefficients = ops.convert_to_tensor(_op_coefficients().astype(np.float32))
        per_edge = ops.matmul(q, coefficients)  # [edges, 2]: E[a], E[b]
        squared, linear = ops.unstack(ops.sum(weights[:, None] * per_edge, axis=0), 2)
        # Skip on an edge reading a cell input (inputs 0, 1) costs P·C² at stride 2.
        inputs = np.zeros(int(alpha.shape[0]), np.float32)
        for block in range(self.num_blocks):
            inputs[block_offset(block):block_offset(block) + 2] = 1.0
        strided_skip = ops.sum(weights * q[:, _SKIP] * inputs)

        p = self.positions()
        pos = np.array([p[s] for s in range(NUM_LEVELS)], np.float64)
        c = np.array([self.filters(s) for s in range(NUM_LEVELS)], np.float64)
        cell_ops = squared * (pos * c * c).astype(np.float32) + linear * (
            pos * c).astype(np.float32)  # [s]
        down = np.zeros((NUM_LEVELS, NUM_LEVELS), np.float32)  # [b, s]: a down-step
        for s in range(1, NUM_LEVELS):
            down[s - 1, s] = pos[s] * c[s] * c[s]
        ops_table = cell_ops[None, :] + strided_skip * down  # [b, s]

        marginals, matrices = self.node_probabilities(betas)
        total = ops.convert_to_tensor(np.float32(self.stem_madds()))
        # P(s_{l-2} = a, s_{l-1} = b); for l = 0 both are the stem (index 0).
        pair = ops.convert_to_tensor(np.outer(np.eye(NUM_LEVELS)[0],
                                              np.eye(NUM_LEVELS)[0]).astype(np.float32))
        for layer in range(self.num_layers):
            # P(a, b, s) = P(a, b) · T_l[b, s] (a Markov chain); P(b, s) sums out a.
            triple = pair[:, :, None] * matrices[layer][None, :, :]
            pair = ops.sum(triple, axis=0)
            table = self.preprocess_table(layer).astype(np.float32)
            total = total + ops.sum(triple * table) + ops.sum(pair * ops_table)
        heads = (marginals[-1] * self.aspp_madds().astype(np.float32)
                 + marginals[self.low_level_cell] * self.decoder_madds().astype(np.float32))
        return total + ops.sum(heads)


def check_settings(target, weight, form, where="Search"):
    """Raises a one-line ValueError naming the bad ``{where}.cost_*`` setting."""
    if target is not None and not (isinstance(target, (int, float))
                                   and not isinstance(target, bool) and target > 0):
        raise ValueError(f"{where}.cost_target: expected a positive number of "
                         f"Multiply-Adds or None, got {target!r}")
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool)
            and weight >= 0 and np.isfinite(weight)):
        raise ValueError(f"{where}.cost_weight: expected a number >= 0, got {weight!r}")
    if form not in PENALTIES:
        raise ValueError(f"{where}.cost_penalty: unknown form {form!r}; known: "
                         f"{', '.join(sorted(PENALTIES))}")


def cost_penalty(expected, target, form="relative"):
    """Penalty on an expected cost above ``target`` (:data:`PENALTIES`)."""
    try:
        fn = PENALTIES[form]
    except KeyError:
        raise ValueError(f"unknown cost penalty {form!r}; known: "
                         f"{', '.join(sorted(PENALTIES))}") from None
    return fn(ops.convert_to_tensor(expected), float(target))


#: Penalty forms: ``relative`` = relu(E/target − 1) (linear in the excess, zero at or
#: below the target); ``log_ratio`` = relu(log(E/target)) (scale-free, gentler far
#: above the target).
PENALTIES = {
    "relative": lambda expected, target: ops.relu(expected / target - 1.0),
    "log_ratio": lambda expected, target: ops.relu(ops.log(expected / target)),
}


def derived_madds(genotype, filter_multiplier, input_size, num_classes, aspp_filters=256,
                  decoder_filters=256):
    """The counter's Multiply-Adds of the derived network of ``genotype`` (one image):
    :func:`~nasseg_tf.models.zoo.build_autodeeplab` with these settings."""
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.counting import count
    from nasseg_tf.models.zoo import build_autodeeplab

    model = build_autodeeplab(num_classes, genotype=genotype,
                              filter_multiplier=filter_multiplier, aspp_filters=aspp_filters,
                              decoder_filters=decoder_filters)
    return int(count(model, tuple(input_size)).madds)
