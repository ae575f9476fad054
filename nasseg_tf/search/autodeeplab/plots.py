"""Pictures of the Auto-DeepLab search (Liu et al. 2019): the path and the cell.

* :func:`plot_network_path` — the network-level trellis with a path through it (§3.2);
  with β, every legal transition drawn with opacity by its probability (eq. 7–8).
* :func:`plot_cell` — a cell of B blocks (§3.1), one colour per op.

Every function draws with matplotlib's Agg canvas (no display, no pyplot state) and
writes the PNG atomically (:func:`nasseg_tf.visualize.save_figure`).
"""

import operator

import numpy as np
from matplotlib.figure import Figure

from nasseg_tf.search.autodeeplab import decode
from nasseg_tf.visualize import INCHES_PER_UNIT, NODE_STYLES, save_figure
from nasseg_tf.search_space import autodeeplab as space
from nasseg_tf.search_space.genotypes import CellGenotype, validate_path
from nasseg_tf.search_space.autodeeplab import DOWNSAMPLE_RATES, NUM_LEVELS, PRIMITIVES

_PATH_COLOR = "#c0392b"
_EDGE_COLOR = "#34495e"
#: One colour per op, so the same op reads the same everywhere in a cell picture.
_OP_COLORS = dict(zip(PRIMITIVES, ("#7f7f7f", "#8c564b", "#e377c2", "#2ca02c", "#1f77b4",
                                   "#17becf", "#ff7f0e", "#d62728")))


# --------------------------------------------------------------------------------------
# Network path on the trellis.


def _trellis_edges(num_layers):
    """Every legal edge as ``(layer, source level, k, target level)``.

    Layer 0's edges leave the stem (level 0).
    """
    mask = space.legal_transition_mask(num_layers)
    return [(layer, source, k, source + space.LEVEL_OFFSETS[k])
            for layer, source, k in zip(*np.nonzero(mask))]


def plot_network_path(path, betas=None, out_path=None, title=None):
    """Draws the L x 4 trellis with the decoded path (Liu et al. 2019, §3.2).

    x is the layer (the stem on the left), y the downsample rate (4 at the top, 32 at
    the bottom). Every legal transition is drawn faintly — with ``betas``, its width and
    opacity grow with its probability (:func:`~nasseg_tf.search.autodeeplab.decode.beta_probabilities`)
    — and the path is drawn bold.

    Args:
      path: ``L`` levels (0..3 = downsample 4..32), a legal path.
      betas: optional logits ``[L, 4, 3]`` for the same ``L``.
      out_path: where to write the PNG (required).
      title: optional title; defaults to a summary of the path.

    Returns:
      ``out_path``.
    """
    try:
        path = [operator.index(level) for level in path]
    except TypeError:
        raise ValueError(f"path: expected a sequence of integer levels, got {path!r}") from None
    validate_path(path)
    num_layers = len(path)
    probs = None
    if betas is not None:
        probs = decode.beta_probabilities(betas)
        if probs.shape[0] != num_layers:
            raise ValueError(f"betas: has L = {probs.shape[0]} layers but path has "
                             f"{num_layers} levels")

    figure = Figure(figsize=(max(6.0, 0.62 * (num_layers + 1) + 1.6), 3.6))
    ax = figure.add_subplot()
    exists = space.node_exists_mask(num_layers)

    for layer, source, k, target in _trellis_edges(num_layers):
        weight = 0.35 if probs is None else float(probs[layer, source, k])
        ax.plot([layer - 1, layer], [source, target], color=_EDGE_COLOR, solid_capstyle="round",
                linewidth=0.4 + 3.6 * weight, alpha=0.12 + 0.6 * weight, zorder=1)
    layers, levels = np.nonzero(exists)
    ax.scatter(layers, levels, s=28, color="white", edgecolor=_EDGE_COLOR, linewidth=0.9,
               zorder=2)
    ax.scatter([-1], [0], s=110, marker="s", color=_EDGE_COLOR, zorder=3)

    xs, ys = [-1] + list(range(num_layers)), [0] + path
    ax.plot(xs, ys, color=_PATH_COLOR, linewidth=3.2, zorder=4, solid_capstyle="round",
            label="decoded path")
    ax.scatter(xs[1:], ys[1:], s=46, color=_PATH_COLOR, zorder=5)
    legend = "legal transition" + (" (width ∝ β probability)" if probs is not None else "")
    ax.plot([], [], color=_EDGE_COLOR, linewidth=2, alpha=0.5, label=legend)

    ax.set_xticks(xs, ["stem"] + [str(layer) for layer in range(num_layers)])
    ax.set_yticks(range(NUM_LEVELS), [str(rate) for rate in DOWNSAMPLE_RATES])
    ax.set_xlim(-1.5, num_layers - 0.5)
    ax.set_ylim(NUM_LEVELS - 0.5, -0.6)
    ax.set_xlabel("layer")
    ax.set_ylabel("downsample")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False,
              fontsize=8)
    if title is None:
        rates = [DOWNSAMPLE_RATES[level] for level in path]
        title = (f"Network path, {num_layers} layer{'s' if num_layers > 1 else ''}, "
                 f"output stride {rates[-1]}")
        if betas is not None:
            title += f" (log p = {decode.path_log_probability(betas, path):.2f})"
    ax.set_title(title, fontsize=10)
    return save_figure(figure, out_path)


# --------------------------------------------------------------------------------------
# Cell as a DAG.


#: Cell picture geometry, in data units (drawn at INCHES_PER_UNIT, equal aspect).
_NODE_GAP = 2.6


def _cell_positions(cell):
    """``{node: x}`` for a one-row layout: H^{l-2}, H^{l-1}, blocks 0..B-1, concat.

    Nodes are hidden-state indices (0 = H^{l-1}, 1 = H^{l-2}, 2 + k = block k) and
    ``"out"``. Every block reads only nodes to its left, so every edge points right.
    """
    order = [1, 0] + [2 + block for block in range(cell.num_blocks)] + ["out"]
    return {node: _NODE_GAP * column for column, node in enumerate(order)}


def _node_label(node, num_blocks):
    if node == "out":
        return f"concat\n({num_blocks} blocks)"
    if node < 2:
        return ("$H^{l-1}$", "$H^{l-2}$")[node]
    return f"block {node - 2}"


def _span(xs, source, target):
    """Number of node gaps an edge crosses."""
    return round((xs[target] - xs[source]) / _NODE_GAP)


def _start_offsets(cell):
    """``{(source, target): x offset}`` of each op edge's anchor inside its source box.

    A node's outgoing edges leave side by side, the longest furthest left (outermost),
    so arrows do not pile up on one point.
    """
    outgoing = {}
    for block, edges in enumerate(cell.blocks):
        for edge in edges:
            outgoing.setdefault(edge.input, []).append(2 + block)
    offsets = {}
    for source, targets in outgoing.items():
        for rank, target in enumerate(sorted(targets, reverse=True)):
            offsets[(source, target)] = (
                0.35 * (2 * rank / (len(targets) - 1) - 1) if len(targets) > 1 else 0.2)
    return offsets


def _op_arc_height(span):
    """Apex height of an op edge over ``span`` node gaps: longer edges arc higher, so no
    two edges share an apex (where their labels sit) and no edge crosses a node."""
    return 0.9 + 0.6 * (span - 1)


def _output_arc_depth(span):
    """Depth of a block -> concat edge, drawn below the row."""
    return 0.7 + 0.3 * (span - 1)


def plot_cell(cell, out_path, title=None):
    """Draws a cell as a DAG (Liu et al. 2019, §3.1).

    The nodes H^{l-2}, H^{l-1}, blocks 0..B-1 and the output concat sit in one row, in
    dependency order. Each block's two incoming edges arc above the row, coloured by
    op and labelled with the op name at the apex (longer edges arc higher, so labels
    never collide); the edges into the concat arc below the row.

    Args:
      cell: a :class:`CellGenotype`.
      out_path: where to write the PNG.
      title: optional title.

    Returns:
      ``out_path``.
    """
    if not isinstance(cell, CellGenotype):
        raise ValueError(f"cell: expected a CellGenotype, got {type(cell).__name__}")
    cell.validate()
    xs = _cell_positions(cell)
    top = max(_op_arc_height(_span(xs, edge.input, 2 + block))
              for block, edges in enumerate(cell.blocks) for edge in edges) + 0.6
    bottom = -_output_arc_depth(cell.num_blocks) - 0.3
    left, right = -1.3, max(xs.values()) + 1.3
    figure = Figure(figsize=(INCHES_PER_UNIT * (right - left),
                             INCHES_PER_UNIT * (top - bottom) + 0.4))
    ax = figure.add_subplot()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")

    boxes = {}
    for node, x in xs.items():
        kind = "output" if node == "out" else "input" if node < 2 else "block"
        boxes[node] = ax.text(x, 0.0, _node_label(node, cell.num_blocks), ha="center",
                              va="center", fontsize=10, bbox=NODE_STYLES[kind], zorder=3)

    def arc(source, target, height, color, start=0.0, end=0.0, **style):
        # arc3 bends by rad * chord in display space (equal aspect: same as data space);
        # its apex, halfway along the quadratic Bezier, lies at half the control offset.
        # ``start``/``end`` shift the anchors inside the boxes (clipped at their edges).
        x0, x1 = xs[source] + start, xs[target] + end
        ax.annotate("", xy=(x1, 0.0), xytext=(x0, 0.0), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color=color, mutation_scale=12,
                                    connectionstyle=f"arc3,rad={-2 * height / (x1 - x0)}",
                                    shrinkA=1, shrinkB=1,
                                    patchA=boxes[source].get_bbox_patch(),
                                    patchB=boxes[target].get_bbox_patch(), **style))

    starts = _start_offsets(cell)
    for block, edges in enumerate(cell.blocks):
        target = 2 + block
        # The longer incoming edge lands further left, the two arrowheads side by side.
        for slot, edge in enumerate(sorted(edges, key=lambda e: xs[e.input])):
            color = _OP_COLORS[edge.op]
            height = _op_arc_height(_span(xs, edge.input, target))
            arc(edge.input, target, height, color, start=starts[(edge.input, target)],
                end=-0.35 + 0.25 * slot, linewidth=1.6)
            ax.text((xs[edge.input] + xs[target]) / 2, height, edge.op, ha="center",
                    va="center", fontsize=7.5, color=color, zorder=2,
                    bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none"))
    for block in range(cell.num_blocks):
        span = cell.num_blocks - block
        arc(2 + block, "out", -_output_arc_depth(span), "#95a5a6",
            end=-0.5 + 1.0 * block / max(1, cell.num_blocks - 1), linewidth=0.9,
            linestyle="--")
    ax.set_title(title or f"Cell: {cell.num_blocks} blocks (output = concat of all blocks)",
                 fontsize=11)
    return save_figure(figure, out_path)



