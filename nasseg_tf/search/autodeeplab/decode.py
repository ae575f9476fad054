"""Decode Auto-DeepLab architecture parameters (alpha, beta) into a genotype.

numpy only: the search calls this on the values of its variables, and so can a user on
a saved checkpoint. Reference: Liu et al., "Auto-DeepLab", CVPR 2019: §3 (search space),
§4.1 (continuous relaxation), §4.3 (decoding); SPEC §2.4.

**Cell parameters alpha** — an array ``[num_cell_edges(B), len(PRIMITIVES)]`` of
logits, one row per edge, one column per op in :data:`PRIMITIVES` order. Edges are
ordered block by block and, within block ``i``, by input index ``0 .. i+1`` (hidden
states as in :mod:`~nasseg_tf.search_space.genotypes`: 0 = H^{l-1}, 1 = H^{l-2},
2 + k = block k). For B = 5 that is 2 + 3 + 4 + 5 + 6 = 20 rows;
:func:`cell_edge_index` lists the ``(block, input)`` of each row.

**Network parameters beta** — an array ``[L, 4, 3]`` of logits. ``betas[l, s, k]`` is
the edge from node ``(l-1, s)`` to node ``(l, s + k - 1)``: ``k = 0`` goes one level
finer (up, to a smaller downsample), ``k = 1`` stays, ``k = 2`` goes one level coarser
(down). Levels ``s = 0..3`` are downsample 4, 8, 16, 32. "Layer -1" is the stem, one
node at level 0, so ``betas[0, 0, 1:]`` are the stem's two outgoing edges (to layer 0
at level 0 or 1). Node ``(l, s)`` exists iff ``0 <= s <= l + 1`` (and ``s <= 3``):
the first layer is at level 0 or 1 and each layer moves at most one level.

Normalisation (paper eq. 7–8, beta sums to 1 over a node's *outgoing* edges): for each
existing source node, the softmax runs over its **legal** outgoing edges only — an edge
whose target level would fall outside 0..3 is dropped and the remaining edges share the
whole mass (rather than a 3-way softmax whose illegal share is lost). So an interior node (level 1 or 2) has 3 outgoing edges,
a boundary node (level 0 or 3) has 2, and the stem has 2 (``k = 1, 2``). The logits of
illegal edges (including every edge of a nonexistent source node) are ignored, whatever
their value; :func:`beta_probabilities` reports them as exactly 0. No other constant
enters the normalisation.

The decoded network path is the legal path maximising the product of these transition
probabilities (Viterbi, paper §4.3); ties within :data:`TIE_TOLERANCE` in log space are
broken towards the lexicographically smallest path (finer levels first).
"""

import operator

import numpy as np

from nasseg_tf.search.autodeeplab.supernet import transition_probabilities
from nasseg_tf.search_space.genotypes import (CellGenotype, Edge, NetworkGenotype,
                                              load_genotype, validate_path)
from nasseg_tf.search_space.autodeeplab import (LEVEL_OFFSETS, NUM_BLOCKS, NUM_LEVELS,
                                                PRIMITIVES, ZERO_OP, block_offset,
                                                check_num_blocks, legal_paths,
                                                legal_transition_mask, num_cell_edges,
                                                transitions)

#: Two path log-probabilities closer than this are a tie (see :func:`viterbi_path`).
TIE_TOLERANCE = 1e-9
#: :func:`brute_force_path` enumerates ~3^L paths; it refuses more layers than this.
MAX_BRUTE_FORCE_LAYERS = 10

_NONZERO_OPS = np.array([op != ZERO_OP for op in PRIMITIVES])


# --------------------------------------------------------------------------------------
# Cell: alpha layout, strengths, decoding (Liu et al. 2019, §3.1 and §4.3).


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def _check_alpha(alpha, num_blocks=None):
    """Returns alpha as float64; checks the shape (rows only when num_blocks is given)."""
    array = np.asarray(alpha, dtype=np.float64)
    num_ops = len(PRIMITIVES)
    if num_blocks is not None:
        rows = num_cell_edges(num_blocks)
        if array.shape != (rows, num_ops):
            raise ValueError(
                f"alpha: expected shape ({rows}, {num_ops}) = (num_cell_edges({num_blocks}) "
                f"edges, len(PRIMITIVES) ops), got {array.shape}")
    elif array.ndim != 2 or array.shape[1] != num_ops or array.shape[0] < 1:
        raise ValueError(
            f"alpha: expected shape (num_edges, {num_ops}) (edges, len(PRIMITIVES) ops), "
            f"got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("alpha: contains NaN or infinite logits")
    return array


def edge_strengths(alpha, num_blocks=NUM_BLOCKS):
    """Strength of every cell edge: its largest softmax weight over non-``none`` ops.

    The softmax runs over all ops of the edge, ``none`` included (the continuous
    relaxation of Liu et al. 2019, §4.1); ``none`` is then excluded from the max
    (§4.3, following DARTS).

    Args:
      alpha: logits ``[num_cell_edges(num_blocks), len(PRIMITIVES)]``.
      num_blocks: blocks per cell (B).

    Returns:
      float64 array ``[num_cell_edges(num_blocks)]``.
    """
    weights = _softmax(_check_alpha(alpha, num_blocks))
    return np.where(_NONZERO_OPS, weights, -np.inf).max(axis=1)


def _best_ops(alpha):
    """Index in PRIMITIVES of every edge's argmax non-``none`` op (ties: lowest index)."""
    return np.where(_NONZERO_OPS, alpha, -np.inf).argmax(axis=1)


def _strongest_two(strengths):
    """Input indices of the two strongest edges, ties to the lower input, ascending."""
    order = np.argsort(-strengths, kind="stable")
    return sorted(int(source) for source in order[:2])


def decode_cell(alpha, num_blocks=NUM_BLOCKS):
    """Derives the discrete cell from alpha (Liu et al. 2019, §4.3; SPEC §2.4).

    Every block keeps its two strongest input edges (see :func:`edge_strengths`; equal
    strengths go to the lower input index) and gives each kept edge its argmax
    non-``none`` op (equal logits go to the op listed first in :data:`PRIMITIVES`).
    ``none`` is never chosen, even where it has the largest logit. The two edges of a
    block are returned in canonical order, input index ascending (see
    :func:`canonical_cell`).

    Args:
      alpha: logits ``[num_cell_edges(num_blocks), len(PRIMITIVES)]``, rows ordered as
        :func:`cell_edge_index`.
      num_blocks: blocks per cell (B).

    Returns:
      A validated :class:`CellGenotype`.
    """
    alpha = _check_alpha(alpha, num_blocks)
    strengths = edge_strengths(alpha, num_blocks)
    best_ops = _best_ops(alpha)
    blocks = []
    for block in range(num_blocks):
        start = block_offset(block)
        kept = _strongest_two(strengths[start:start + block + 2])
        blocks.append(tuple(Edge(PRIMITIVES[best_ops[start + source]], source)
                            for source in kept))
    return CellGenotype(tuple(blocks)).validate()


def canonical_cell(cell):
    """The same cell with each block's two edges sorted by input index (then op name).

    The two edges of a block are summed, so their order carries no meaning;
    :func:`decode_cell` always returns this canonical order.
    """
    return CellGenotype(tuple(tuple(sorted(block, key=lambda e: (e.input, e.op)))
                              for block in cell.blocks))


# --------------------------------------------------------------------------------------
# Network: beta layout and normalisation (Liu et al. 2019, §3.2 and §4.1, eq. 6–8).


def _check_betas(betas):
    """Returns betas as float64 and its legal mask; checks shape and legal values."""
    array = np.asarray(betas, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (NUM_LEVELS, 3) or array.shape[0] < 1:
        raise ValueError(
            f"betas: expected shape (L, {NUM_LEVELS}, 3) (layers, source level, "
            f"k = up/same/down) with L >= 1, got {array.shape}")
    mask = legal_transition_mask(array.shape[0])
    if not np.all(np.isfinite(array[mask])):
        raise ValueError("betas: contains NaN or infinite logits on legal edges")
    return array, mask


def _log_beta_probabilities(betas, mask):
    """Log transition probabilities (eq. 7–8, :func:`transition_probabilities`) in
    float64; -inf on illegal edges."""
    probabilities = np.asarray(transition_probabilities(betas), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mask, np.log(probabilities), -np.inf)


def beta_probabilities(betas):
    """Transition probabilities from beta logits (Liu et al. 2019, eq. 7–8), in float64.

    Checks the layout and calls :func:`~nasseg_tf.search.autodeeplab.supernet.
    transition_probabilities`, the one implementation of the normalisation.

    Args:
      betas: logits ``[L, 4, 3]`` (layout in the module docstring).

    Returns:
      float64 ``[L, 4, 3]``: for every existing source node the probabilities of its
      legal outgoing edges sum to 1; illegal edges and nonexistent nodes are exactly 0.
    """
    betas, _ = _check_betas(betas)
    return np.asarray(transition_probabilities(betas), dtype=np.float64)


def _as_path(path, num_layers, field="path"):
    """A path as a tuple of Python ints, validated against the trellis of L layers."""
    try:
        levels = [operator.index(level) for level in path]
    except TypeError:
        raise ValueError(
            f"{field}: expected a sequence of integer levels, got {path!r}") from None
    validate_path(levels, field)
    if len(levels) != num_layers:
        raise ValueError(
            f"{field}: has {len(levels)} levels but betas has L = {num_layers} layers")
    return tuple(levels)


def _path_score(log_probs, path):
    """Sum of the log transition probabilities along a path, stem first."""
    total, source = 0.0, 0
    for layer, target in enumerate(path):
        total += log_probs[layer, source, target - source + 1]
        source = target
    return float(total)


def path_log_probability(betas, path):
    """Log of the product of the transition probabilities along ``path`` (stem first).

    Args:
      betas: logits ``[L, 4, 3]``.
      path: ``L`` levels, a legal path (:func:`~nasseg_tf.search_space.genotypes.validate_path`).

    Returns:
      A float ``<= 0``.
    """
    betas, mask = _check_betas(betas)
    return _path_score(_log_beta_probabilities(betas, mask), _as_path(path, betas.shape[0]))


def viterbi_path(betas):
    """The most probable network path (Liu et al. 2019, §4.3: Viterbi over beta).

    Exact dynamic programming in log space over the trellis. It runs backwards —
    ``best[l, s]`` is the largest log-probability of layers ``l+1 .. L-1`` given node
    ``(l, s)`` — so that the forward traceback from the stem can take, at every layer,
    the smallest level among the choices within :data:`TIE_TOLERANCE` of the best. Ties
    therefore go to the lexicographically smallest path, as in :func:`brute_force_path`.

    Args:
      betas: logits ``[L, 4, 3]`` (layout and normalisation in the module docstring).

    Returns:
      ``(path, log_probability)``: a tuple of ``L`` levels (0..3 = downsample 4..32),
      always legal, and the log of its probability.
    """
    betas, mask = _check_betas(betas)
    log_probs = _log_beta_probabilities(betas, mask)
    num_layers = betas.shape[0]
    best = np.full((num_layers, NUM_LEVELS), -np.inf)
    best[-1] = 0.0
    for layer in range(num_layers - 2, -1, -1):
        for source in range(NUM_LEVELS):
            for k, target in transitions(mask, layer + 1, source):
                score = log_probs[layer + 1, source, k] + best[layer + 1, target]
                best[layer, source] = max(best[layer, source], score)
    path, source = [], 0
    for layer in range(num_layers):
        choices = [(log_probs[layer, source, k] + best[layer, target], target)
                   for k, target in transitions(mask, layer, source)]
        top = max(score for score, _ in choices)
        source = min(target for score, target in choices if score >= top - TIE_TOLERANCE)
        path.append(source)
    path = tuple(path)
    return path, _path_score(log_probs, path)


def brute_force_path(betas):
    """The most probable path by enumerating all legal paths (a test oracle).

    Same result and tie-breaking as :func:`viterbi_path` (lexicographically smallest
    among the paths within :data:`TIE_TOLERANCE` of the best log-probability).

    Raises:
      ValueError: if betas has more than :data:`MAX_BRUTE_FORCE_LAYERS` layers.
    """
    betas, mask = _check_betas(betas)
    num_layers = betas.shape[0]
    if num_layers > MAX_BRUTE_FORCE_LAYERS:
        raise ValueError(
            f"betas: L = {num_layers} layers; brute force enumerates ~3^L paths and is "
            f"limited to L <= {MAX_BRUTE_FORCE_LAYERS} (use viterbi_path)")
    log_probs = _log_beta_probabilities(betas, mask)
    scored = [(path, _path_score(log_probs, path)) for path in legal_paths(num_layers)]
    top = max(score for _, score in scored)
    return next((path, score) for path, score in scored if score >= top - TIE_TOLERANCE)


# --------------------------------------------------------------------------------------
# Whole network, encoding, entropies.


def decode_supernet(model, name=""):
    """Decodes the current α and β of an :class:`AutoDeepLabSupernet`."""
    return decode_network(np.asarray(model.alpha), np.asarray(model.beta),
                          num_blocks=model.num_blocks, name=name)


def decode_network(alpha, betas, num_blocks=NUM_BLOCKS, name=""):
    """Decodes alpha and beta into a validated :class:`NetworkGenotype`.

    The cell comes from :func:`decode_cell`, the path from :func:`viterbi_path`; the
    result has the format the zoo reads (``genotype.save(path)`` writes it).
    """
    cell = decode_cell(alpha, num_blocks)
    path, _ = viterbi_path(betas)
    return NetworkGenotype(cell, path, str(name)).validate()


def encode_published(genotype, num_blocks=NUM_BLOCKS, strength=4.0):
    """Builds alpha and beta logits that decode to ``genotype`` (for tests and warm starts).

    Each of the genotype's edges gets logit ``strength`` on its op and each transition of
    its path gets logit ``strength``; every other logit is 0. Decoding recovers the cell
    (in canonical edge order, :func:`canonical_cell`) and the path exactly, for any
    number of layers, whenever ``strength > ln 2``: a kept edge then has strength
    ``e^s / (e^s + 7) > 1/8`` (every other edge), and every on-path transition has
    probability ``>= e^s / (e^s + 2) > 1/2``, while a path that leaves it pays a factor
    ``<= 1 / (e^s + 1)`` once and ``<= 1/2`` per layer until it rejoins.

    Args:
      genotype: a :class:`NetworkGenotype`, a published name or a JSON path (anything
        :func:`~nasseg_tf.search_space.genotypes.load_genotype` accepts).
      num_blocks: blocks per cell; must match the genotype.
      strength: the logit of the preferred ops and transitions, ``> ln 2``.

    Returns:
      ``(alpha, betas)``: float32 ``[num_cell_edges(num_blocks), len(PRIMITIVES)]`` and
      ``[len(path), 4, 3]``.
    """
    genotype = load_genotype(genotype)
    num_blocks = check_num_blocks(num_blocks)
    if genotype.cell.num_blocks != num_blocks:
        raise ValueError(f"num_blocks: {num_blocks}, but the genotype's cell has "
                         f"{genotype.cell.num_blocks} blocks")
    if not np.isfinite(strength) or strength <= np.log(2.0):
        raise ValueError(f"strength: must be finite and > ln 2 = 0.693 for decoding to "
                         f"recover the genotype, got {strength!r}")
    alpha = np.zeros((num_cell_edges(num_blocks), len(PRIMITIVES)), np.float32)
    for block, edges in enumerate(genotype.cell.blocks):
        where = f"genotype.cell.blocks[{block}]"
        if edges[0].input == edges[1].input:
            raise ValueError(f"{where}: both edges read input {edges[0].input}; decoding "
                             "keeps two distinct inputs per block, so it cannot be encoded")
        for edge in edges:
            if edge.op == ZERO_OP:
                raise ValueError(f"{where}: op {ZERO_OP!r} is never decoded, so it cannot "
                                 "be encoded")
            alpha[block_offset(block) + edge.input, PRIMITIVES.index(edge.op)] = strength
    betas = np.zeros((len(genotype.path), NUM_LEVELS, len(LEVEL_OFFSETS)), np.float32)
    source = 0
    for layer, target in enumerate(genotype.path):
        betas[layer, source, target - source + 1] = strength
        source = target
    return alpha, betas


def alpha_entropy(alpha):
    """Mean entropy (nats) of the op distribution softmax(alpha) per edge.

    Between 0 (every edge one-hot) and ``ln len(PRIMITIVES)`` (uniform); for TensorBoard.
    """
    weights = _softmax(_check_alpha(alpha))
    return float(-(weights * np.log(np.maximum(weights, 1e-300))).sum(axis=1).mean())


def beta_entropy(betas):
    """Mean entropy (nats) of the outgoing-transition distribution per existing source node.

    Averaged over the stem and every node of layers ``0 .. L-2`` (the sources of betas);
    a boundary node's maximum is ``ln 2``, an interior node's ``ln 3``.
    """
    betas, mask = _check_betas(betas)
    log_probs = _log_beta_probabilities(betas, mask)
    terms = np.where(mask, np.exp(log_probs) * np.where(mask, log_probs, 0.0), 0.0)
    sources = mask.any(axis=2)
    return float(-terms.sum(axis=2)[sources].mean())
