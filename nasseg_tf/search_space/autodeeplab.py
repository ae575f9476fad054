"""The Auto-DeepLab search space: the op table and the topology of cell and trellis.

Reference: Liu et al., "Auto-DeepLab", CVPR 2019, §3.1 (cell) and §3.2 (network-level
trellis); SPEC §2.1–2.2. Everything that says *which* ops, edges, nodes and paths exist
lives here, once; the supernet, the decoder, the pictures and the derived models read
it from here.

**Op table.** :data:`OP_TABLE` declares the 8 candidate ops (name, kind, kernel, rate);
:data:`PRIMITIVES` lists their names in the column order of the cell architecture
parameters alpha (one row per edge, one column per op).

**Cell edges.** A cell has B blocks; block i reads the two cell inputs and blocks
0..i-1 (hidden states 0 = H^{l-1}, 1 = H^{l-2}, 2 + k = block k), so it has i + 2
edges and a cell B(B+3)/2 (20 for B = 5), ordered block by block and by input
(:func:`cell_edge_index`) — the rows of alpha.

**Trellis.** After the stem (downsample 4) come L layers of up to 4 nodes at levels
s = 0..3 (downsample 4·2^s). Node (l, s) exists iff s <= l + 1 (:func:`node_exists_mask`):
the first layer is at level 0 or 1 and each layer moves at most one level. The
transition ``k`` out of a node goes one level finer (``UP``), stays (``SAME``) or goes
one level coarser (``DOWN``); :func:`legal_transition_mask` says which of the
``[L, 4, 3]`` entries of beta are real edges ("layer -1" is the stem, one node at level
0), :func:`legal_paths` and :func:`count_paths` enumerate and count the paths.
"""

import dataclasses

import numpy as np

@dataclasses.dataclass(frozen=True)
class CandidateOp:
    """One candidate op of the cell: its name and what it computes.

    ``kind`` is ``zero`` (no output), ``pool`` (``pool`` = ``max`` | ``avg``, 3×3),
    ``skip`` (identity), ``separable`` (two × [ReLU → separable k×k conv → BN]) or
    ``atrous`` (ReLU → regular k×k conv of ``rate`` → BN) — the semantics of the
    official release's derived model (SPEC §2.5); :mod:`nasseg_tf.layers.ops` builds
    them, the search's batched cell computes them all at once.
    """

    name: str
    kind: str
    kernel: int = 1
    rate: int = 1
    pool: str = None


#: The op table, declared once: its order is the column order of alpha.
OP_TABLE = (
    CandidateOp("none", "zero"),
    CandidateOp("max_pool_3x3", "pool", 3, pool="max"),
    CandidateOp("avg_pool_3x3", "pool", 3, pool="avg"),
    CandidateOp("skip_connect", "skip"),
    CandidateOp("sep_conv_3x3", "separable", 3),
    CandidateOp("sep_conv_5x5", "separable", 5),
    CandidateOp("atrous_conv_3x3", "atrous", 3, rate=2),
    CandidateOp("atrous_conv_5x5", "atrous", 5, rate=2),
)
#: The op names in alpha's column order.
PRIMITIVES = tuple(op.name for op in OP_TABLE)
OPS_BY_NAME = {op.name: op for op in OP_TABLE}

ZERO_OP = "none"

#: Official TF1 DeepLab ("hnasnet") op names -> ours. Ours keep the paper's names;
#: the official ``separable_kxk_2`` is our ``sep_conv_kxk`` (two stacked separable convs).
OFFICIAL_TO_OURS = {
    "separable_3x3_2": "sep_conv_3x3",
    "separable_5x5_2": "sep_conv_5x5",
    "atrous_3x3": "atrous_conv_3x3",
    "atrous_5x5": "atrous_conv_5x5",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
    "skip_connect": "skip_connect",
    "none": "none",
}
OURS_TO_OFFICIAL = {ours: official for official, ours in OFFICIAL_TO_OURS.items()}

#: Blocks per cell (B in the paper).
NUM_BLOCKS = 5
#: Resolution levels of the trellis: level i is downsample 4 * 2**i.
NUM_LEVELS = 4
DOWNSAMPLE_RATES = (4, 8, 16, 32)

#: Index k of the three transitions out of a node: one level finer, same, coarser.
UP, SAME, DOWN = 0, 1, 2
#: Target level minus source level for k = UP, SAME, DOWN.
LEVEL_OFFSETS = (-1, 0, 1)


# --------------------------------------------------------------------------------------
# Cell edges.


def check_num_blocks(num_blocks):
    if (isinstance(num_blocks, bool) or not isinstance(num_blocks, (int, np.integer))
            or num_blocks < 1):
        raise ValueError(f"num_blocks: expected a positive int, got {num_blocks!r}")
    return int(num_blocks)


def block_offset(block):
    """Row of alpha holding edge ``(block, input 0)``: blocks before it have 2, 3, ... edges."""
    return block * (block + 3) // 2


def num_cell_edges(num_blocks=NUM_BLOCKS):
    """Number of edges (rows of alpha) in a cell of ``num_blocks`` blocks: B(B+3)/2."""
    return block_offset(check_num_blocks(num_blocks))


def cell_edge_index(num_blocks=NUM_BLOCKS):
    """The ``(block, input)`` pair of every row of alpha, in row order.

    Example: ``cell_edge_index(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]``.
    """
    num_blocks = check_num_blocks(num_blocks)
    return [(block, source) for block in range(num_blocks) for source in range(block + 2)]



# --------------------------------------------------------------------------------------
# Trellis.


def check_num_layers(num_layers):
    if (isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer))
            or num_layers < 1):
        raise ValueError(f"num_layers: expected a positive int, got {num_layers!r}")
    return int(num_layers)


def node_exists_mask(num_layers):
    """Boolean ``[L, 4]``: node ``(l, s)`` exists iff ``s <= l + 1``."""
    num_layers = check_num_layers(num_layers)
    layers = np.arange(num_layers)[:, None]
    levels = np.arange(NUM_LEVELS)[None, :]
    return levels <= layers + 1


def legal_transition_mask(num_layers):
    """Boolean ``[L, 4, 3]``: which entries of betas are real edges.

    ``mask[l, s, k]`` is true iff the source node ``(l-1, s)`` exists (for ``l = 0`` the
    source is the stem, level 0 only; in general ``s <= l``) and the target level
    ``s + k - 1`` lies in ``0..3`` (it then also exists at layer ``l``).
    """
    num_layers = check_num_layers(num_layers)
    mask = np.zeros((num_layers, NUM_LEVELS, len(LEVEL_OFFSETS)), dtype=bool)
    for layer in range(num_layers):
        for source in range(min(layer, NUM_LEVELS - 1) + 1):
            for k, offset in enumerate(LEVEL_OFFSETS):
                target = source + offset
                mask[layer, source, k] = 0 <= target < NUM_LEVELS and target <= layer + 1
    return mask


def transitions(mask, layer, source):
    """The legal ``(k, target level)`` pairs out of node ``(layer - 1, source)``."""
    return [(k, source + offset) for k, offset in enumerate(LEVEL_OFFSETS)
            if mask[layer, source, k]]


def legal_paths(num_layers):
    """Yields every legal path of ``num_layers`` layers in lexicographic order."""
    mask = legal_transition_mask(num_layers)

    def extend(prefix, source):
        if len(prefix) == num_layers:
            yield tuple(prefix)
            return
        for _, target in sorted(transitions(mask, len(prefix), source), key=lambda t: t[1]):
            yield from extend(prefix + [target], target)

    yield from extend([], 0)


def count_paths(num_layers, first_levels=None):
    """Number of legal paths, by dynamic programming over the trellis.

    With the trellis of SPEC §2.2 (the first layer at downsample 4 or 8) and L = 12
    this is 75,025. The paper quotes "2.9 × 10^4" paths: that is 28,657, the count with
    the first layer fixed at downsample 4 (``first_levels=(0,)``) — we keep the
    paper's stated rule (4 or 8) and note the difference here.

    Args:
      num_layers: L.
      first_levels: restrict layer 0 to these levels (default: every legal one).
    """
    mask = legal_transition_mask(num_layers)
    ways = {target: 1 for _, target in transitions(mask, 0, 0)
            if first_levels is None or target in first_levels}
    for layer in range(1, num_layers):
        new = {}
        for source, count in ways.items():
            for _, target in transitions(mask, layer, source):
                new[target] = new.get(target, 0) + count
        ways = new
    return sum(ways.values())
