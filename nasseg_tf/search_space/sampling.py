"""Uniformly random Auto-DeepLab architectures: the random-search baseline's samplers.

Reference: Liu et al., "Auto-DeepLab", CVPR 2019, §3 (the space); random search at
equal budget is the baseline NAS practice asks for (Li & Talwalkar, "Random Search
and Reproducibility for Neural Architecture Search", UAI 2019).

The space is the one the search decodes into (SPEC §2.4), not the larger space of
every valid genotype:

* **Cell** — each block ``i`` reads two *distinct* hidden states among ``0 .. i+1``
  (the decoder keeps the two strongest predecessors) and applies a non-``none`` op to
  each (the decoder never picks ``none``); the two edges are listed input ascending,
  the decoder's canonical order. :func:`sample_cell` draws the pair of inputs uniformly
  among the ``C(i+2, 2)`` pairs and each op uniformly among the 7 others: uniform over
  the ``prod_i C(i+2, 2) * 49`` decodable cells.
* **Path** — uniform over the legal paths of the trellis
  (:func:`~nasseg_tf.search_space.autodeeplab.legal_paths`). :func:`completion_counts`
  counts, by dynamic programming, the legal completions from every node;
  :func:`sample_path` walks from the stem choosing each next level with probability
  proportional to its number of completions, so every path has probability exactly
  ``1 / count_paths(L)``.

:func:`sample_distinct` never repeats an architecture (compared by
:func:`architecture_key`).
"""

import json
import math

import numpy as np

from nasseg_tf.search_space.autodeeplab import (NUM_BLOCKS, NUM_LEVELS, PRIMITIVES,
                                                ZERO_OP, check_num_blocks,
                                                check_num_layers, count_paths,
                                                legal_transition_mask, transitions)
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, NetworkGenotype

#: The ops a decoded cell can hold: every op but ``none``.
DECODABLE_OPS = tuple(op for op in PRIMITIVES if op != ZERO_OP)


def completion_counts(num_layers):
    """Number of legal completions from every node of the trellis.

    Returns:
      int array ``[L, 4]``: ``counts[l, s]`` is the number of ways to choose the levels
      of layers ``l+1 .. L-1`` given that layer ``l`` is at level ``s`` (1 on the last
      layer; 0 where node ``(l, s)`` does not exist). Summed over the stem's legal
      first levels it is :func:`~nasseg_tf.search_space.autodeeplab.count_paths`.
    """
    num_layers = check_num_layers(num_layers)
    mask = legal_transition_mask(num_layers)
    counts = np.zeros((num_layers, NUM_LEVELS), dtype=np.int64)
    counts[-1, :] = [1 if level <= num_layers else 0 for level in range(NUM_LEVELS)]
    for layer in range(num_layers - 2, -1, -1):
        for source in range(NUM_LEVELS):
            counts[layer, source] = sum(counts[layer + 1, target]
                                        for _, target in transitions(mask, layer + 1, source))
    return counts


def sample_path(rng, num_layers, counts=None):
    """A legal path drawn uniformly among all ``count_paths(num_layers)`` paths.

    Args:
      rng: a ``numpy.random.Generator``.
      num_layers: L.
      counts: :func:`completion_counts` of ``num_layers`` (computed if not given).

    Returns:
      A tuple of ``L`` levels.
    """
    num_layers = check_num_layers(num_layers)
    counts = completion_counts(num_layers) if counts is None else counts
    mask = legal_transition_mask(num_layers)
    path, source = [], 0  # "layer -1" is the stem, at level 0
    for layer in range(num_layers):
        targets = [target for _, target in transitions(mask, layer, source)]
        weights = np.array([counts[layer, t] for t in targets], dtype=np.float64)
        source = targets[int(rng.choice(len(targets), p=weights / weights.sum()))]
        path.append(source)
    return tuple(path)


def sample_cell(rng, num_blocks=NUM_BLOCKS):
    """A cell drawn uniformly among those the decoder can produce (module docstring)."""
    num_blocks = check_num_blocks(num_blocks)
    blocks = []
    for block in range(num_blocks):
        inputs = sorted(int(i) for i in rng.choice(block + 2, size=2, replace=False))
        blocks.append(tuple(Edge(DECODABLE_OPS[int(rng.integers(len(DECODABLE_OPS)))], i)
                            for i in inputs))
    return CellGenotype(tuple(blocks)).validate()


def sample_genotype(rng, num_layers, num_blocks=NUM_BLOCKS, name="", counts=None):
    """A random :class:`NetworkGenotype`: :func:`sample_cell` and :func:`sample_path`."""
    cell = sample_cell(rng, num_blocks)
    return NetworkGenotype(cell, sample_path(rng, num_layers, counts), name).validate()


def num_cells(num_blocks=NUM_BLOCKS):
    """How many distinct cells :func:`sample_cell` can draw: ``prod_i C(i+2, 2) * 7^2``."""
    num_blocks = check_num_blocks(num_blocks)
    return math.prod(math.comb(block + 2, 2) * len(DECODABLE_OPS) ** 2
                     for block in range(num_blocks))


def num_architectures(num_layers, num_blocks=NUM_BLOCKS):
    """Size of the sampled space: cells times paths (B = 5, L = 12: about 10^19)."""
    return num_cells(num_blocks) * count_paths(num_layers)


def architecture_key(genotype):
    """A canonical string for a genotype's architecture: its cell (each block's edges
    sorted by input, then op — their order carries no meaning) and its path; the name
    is ignored."""
    blocks = [sorted([edge.input, edge.op] for edge in block)
              for block in genotype.cell.blocks]
    return json.dumps({"cell": blocks, "path": [int(level) for level in genotype.path]},
                      sort_keys=True)


def sample_distinct(rng, count, num_layers, num_blocks=NUM_BLOCKS, exclude=()):
    """``count`` random genotypes, pairwise distinct and distinct from ``exclude``.

    Args:
      rng: a ``numpy.random.Generator`` (same seed, same architectures).
      count: how many.
      num_layers, num_blocks: L and B of the space.
      exclude: genotypes not to draw (e.g. the searched one).

    Raises:
      ValueError: if the space holds fewer than ``count`` architectures outside
        ``exclude``.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count: expected a non-negative int, got {count!r}")
    taken = {architecture_key(g) for g in exclude}
    available = num_architectures(num_layers, num_blocks) - len(taken)
    if count > available:
        raise ValueError(f"count: {count} distinct architectures asked for, but the space "
                         f"of L = {num_layers}, B = {num_blocks} holds only {available} "
                         "more")
    counts = completion_counts(num_layers)
    drawn = []
    while len(drawn) < count:
        genotype = sample_genotype(rng, num_layers, num_blocks, counts=counts)
        key = architecture_key(genotype)
        if key not in taken:
            taken.add(key)
            drawn.append(genotype)
    return drawn
