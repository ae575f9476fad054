"""Pictures of the searches: Auto-DeepLab's path and cell, the DPC cell and search.

Every function draws with matplotlib's Agg canvas (no display, no pyplot state) and
writes the PNG atomically (temp file + ``os.replace``), so a reader never sees half a
file.

* Auto-DeepLab (Liu et al. 2019): :func:`plot_network_path`, the network-level trellis
  with a path through it (§3.2), and :func:`plot_cell`, a cell of B blocks (§3.1).
* DPC (Chen et al. 2018): :func:`plot_dpc_cell`, a Dense Prediction Cell as a DAG from
  the backbone features to the concat + 1×1 projection (§3.1), and
  :func:`plot_dpc_search`, val mIoU per trial with the best so far and the median of
  random cells (§3.3).
"""

import math
import operator
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator

from nasseg_tf.search import decode
from nasseg_tf.search_space.dpc import DPCCell, load_dpc_cell
from nasseg_tf.search_space.genotypes import CellGenotype, validate_path
from nasseg_tf.search_space.primitives import DOWNSAMPLE_RATES, NUM_LEVELS, PRIMITIVES

_PATH_COLOR = "#c0392b"
_EDGE_COLOR = "#34495e"
#: One colour per op, so the same op reads the same everywhere in a cell picture.
_OP_COLORS = dict(zip(PRIMITIVES, ("#7f7f7f", "#8c564b", "#e377c2", "#2ca02c", "#1f77b4",
                                   "#17becf", "#ff7f0e", "#d62728")))
_NODE_STYLES = {
    "input": dict(boxstyle="round,pad=0.45", facecolor="#d6eaf8", edgecolor="#2e86c1"),
    "block": dict(boxstyle="round,pad=0.45", facecolor="#fdf2d0", edgecolor="#b7950b"),
    "output": dict(boxstyle="round,pad=0.45", facecolor="#d5f5e3", edgecolor="#1e8449"),
}


def _save(figure, out_path):
    """Writes the figure as PNG atomically and returns ``out_path``."""
    if not out_path:
        raise ValueError("out_path: required (where to write the PNG)")
    out_path = os.fspath(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    FigureCanvasAgg(figure)
    try:
        figure.savefig(tmp, format="png", dpi=150, bbox_inches="tight", facecolor="white")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_path


# --------------------------------------------------------------------------------------
# Network path on the trellis.


def _trellis_edges(num_layers):
    """Every legal edge as ``(layer, source level, k, target level)``.

    Layer 0's edges leave the stem (level 0).
    """
    mask = decode.legal_transition_mask(num_layers)
    return [(layer, source, k, source + decode.LEVEL_OFFSETS[k])
            for layer, source, k in zip(*np.nonzero(mask))]


def plot_network_path(path, betas=None, out_path=None, title=None):
    """Draws the L x 4 trellis with the decoded path (Liu et al. 2019, §3.2).

    x is the layer (the stem on the left), y the downsample rate (4 at the top, 32 at
    the bottom). Every legal transition is drawn faintly — with ``betas``, its width and
    opacity grow with its probability (:func:`~nasseg_tf.search.decode.beta_probabilities`)
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
    exists = decode.node_exists_mask(num_layers)

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
    return _save(figure, out_path)


# --------------------------------------------------------------------------------------
# Cell as a DAG.


#: Cell picture geometry, in data units (drawn at _INCHES_PER_UNIT, equal aspect).
_NODE_GAP = 2.6
_INCHES_PER_UNIT = 0.5


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
    figure = Figure(figsize=(_INCHES_PER_UNIT * (right - left),
                             _INCHES_PER_UNIT * (top - bottom) + 0.4))
    ax = figure.add_subplot()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")

    boxes = {}
    for node, x in xs.items():
        kind = "output" if node == "out" else "input" if node < 2 else "block"
        boxes[node] = ax.text(x, 0.0, _node_label(node, cell.num_blocks), ha="center",
                              va="center", fontsize=10, bbox=_NODE_STYLES[kind], zorder=3)

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
    return _save(figure, out_path)



# --------------------------------------------------------------------------------------
# DPC cell as a DAG.


#: DPC op kinds: legend text, (edge colour, fill colour).
_DPC_KINDS = {
    "conv1x1": ("1×1 conv", ("#7d3c98", "#ebdef0")),
    "sep3x3": ("3×3 atrous separable conv (rate h×w)", ("#b9770e", "#fdebd0")),
    "pool": ("pyramid pooling (grid h×w)", ("#a93226", "#fadbd8")),
}
#: DPC picture geometry, in data units (drawn at _INCHES_PER_UNIT, equal aspect).
_DPC_COLUMN = 3.6
_DPC_ROW = 1.25
_DPC_BOX = (2.5, 0.85)  # a branch's width, height
_DPC_F_WIDTH = 1.5
_DPC_OUT_WIDTH = 1.7
_CONCAT_COLOR = "#95a5a6"


def _dpc_kind(branch):
    if branch.op == "pyramid_pooling":
        return "pool"
    return "conv1x1" if branch.kernel == 1 else "sep3x3"


def _dpc_op_label(branch):
    """Short op text: ``1×1 conv``, ``sep 3×3 r6×18``, ``pool 2×4``."""
    kind = _dpc_kind(branch)
    if kind == "pool":
        return f"pool {branch.grid_size[0]}×{branch.grid_size[1]}"
    if kind == "conv1x1":
        return "1×1 conv"
    return f"sep 3×3 r{branch.rate[0]}×{branch.rate[1]}"


def _dpc_layout(cell):
    """``(depth, row)`` per branch: column = longest path from F (1 for a branch on F,
    its input's + 1 otherwise), row = preorder of the input tree rooted at F, so a
    branch sits on its own row, below its input's, and a chain reads left to right."""
    depth, children = [], {}
    for i, branch in enumerate(cell.branches):
        depth.append(1 if branch.input < 0 else depth[branch.input] + 1)
        children.setdefault(branch.input, []).append(i)
    rows, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        node = stack.pop()
        rows.append(node)
        stack.extend(reversed(children.get(node, [])))
    row = {branch: position for position, branch in enumerate(rows)}
    return depth, [row[i] for i in range(cell.num_branches)]


def _as_dpc_cell(cell):
    """Anything :func:`load_dpc_cell` accepts -> a validated :class:`DPCCell`."""
    if not isinstance(cell, (DPCCell, list, tuple, str, os.PathLike)):
        raise ValueError(f"cell: expected a DPCCell, a list of branch configs, a "
                         f"published cell name or a JSON path, got {type(cell).__name__}")
    return load_dpc_cell(os.fspath(cell) if isinstance(cell, os.PathLike) else cell)


def plot_dpc_cell(cell, out_path, title=None):
    """Draws a Dense Prediction Cell as a DAG (Chen et al. 2018, §3.1, Fig. 2).

    The backbone features F sit on the left; each branch is a box labelled ``Y<i>`` and
    its op (``1×1 conv``, ``sep 3×3 r6×18``, ``pool 2×4``), coloured by op kind, in the
    column of its depth (the longest path from F) and on its own row, so chains read
    left to right. An arrow in the branch's colour comes from its input; a dashed
    arrow from every branch runs along its row into the ``concat → 1×1`` output on
    the right (the cell's output is the concat of all branches, then a 1×1 conv).

    Args:
      cell: a :class:`~nasseg_tf.search_space.dpc.DPCCell`, its JSON config list, a
        published name or a JSON path (anything :func:`load_dpc_cell` accepts).
      out_path: where to write the PNG.
      title: optional title; defaults to the cell's name and size.

    Returns:
      ``out_path``.
    """
    cell = _as_dpc_cell(cell)
    depth, row = _dpc_layout(cell)
    width, height = _DPC_BOX
    num_rows, out_column = cell.num_branches, max(depth) + 1
    ys = [-_DPC_ROW * r for r in row]
    xs = [_DPC_COLUMN * d for d in depth]
    x_out, y_mid = _DPC_COLUMN * out_column, -_DPC_ROW * (num_rows - 1) / 2
    top, bottom = height / 2 + 0.25, -_DPC_ROW * (num_rows - 1) - height / 2 - 0.25
    left, right = -_DPC_F_WIDTH / 2 - 0.25, x_out + _DPC_OUT_WIDTH / 2 + 0.25
    figure = Figure(figsize=(_INCHES_PER_UNIT * (right - left),
                             _INCHES_PER_UNIT * (top - bottom)))
    ax = figure.add_axes((0, 0, 1, 1))  # the axes fill the figure: text fits the boxes
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")

    def box(x, y, box_width, box_height, label, edge, face, **text_style):
        ax.add_patch(FancyBboxPatch((x - box_width / 2, y - box_height / 2), box_width,
                                    box_height, boxstyle="round,pad=0,rounding_size=0.15",
                                    facecolor=face, edgecolor=edge, linewidth=1.2,
                                    zorder=3))
        ax.text(x, y, label, ha="center", va="center", zorder=4, linespacing=1.25,
                **text_style)

    def arrow(start, end, color, **style):
        ax.annotate("", xy=end, xytext=start, zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, mutation_scale=11,
                                    shrinkA=0, shrinkB=0, **style))

    box(0.0, y_mid, _DPC_F_WIDTH, height, "F\nbackbone",
        _NODE_STYLES["input"]["edgecolor"], _NODE_STYLES["input"]["facecolor"],
        fontsize=8.5)
    out_height = _DPC_ROW * (num_rows - 1) + height  # spans every row
    box(x_out, y_mid, _DPC_OUT_WIDTH, out_height, "concat\n→ 1×1 conv",
        _NODE_STYLES["output"]["edgecolor"], _NODE_STYLES["output"]["facecolor"],
        fontsize=8.5)
    for i, branch in enumerate(cell.branches):
        edge, face = _DPC_KINDS[_dpc_kind(branch)][1]
        box(xs[i], ys[i], width, height, f"Y{i}\n{_dpc_op_label(branch)}", edge, face,
            fontsize=8)
        if branch.input < 0:
            x0, y0 = _DPC_F_WIDTH / 2, y_mid
        else:
            x0, y0 = xs[branch.input] + width / 2, ys[branch.input]
        # Arrows leaving one box fan out from slightly different points of its edge.
        y0 += float(np.clip(0.12 * (ys[i] - y0), -0.3 * height, 0.3 * height))
        arrow((x0, y0), (xs[i] - width / 2, ys[i]), edge, linewidth=1.5)
        arrow((xs[i] + width / 2, ys[i]), (x_out - _DPC_OUT_WIDTH / 2, ys[i]),
              _CONCAT_COLOR, linewidth=0.9, linestyle="--")

    kinds = [kind for kind in _DPC_KINDS if any(_dpc_kind(b) == kind
                                                 for b in cell.branches)]
    handles = [Patch(facecolor=_DPC_KINDS[k][1][1], edgecolor=_DPC_KINDS[k][1][0],
                     label=_DPC_KINDS[k][0]) for k in kinds]
    handles.append(Line2D([], [], color=_CONCAT_COLOR, linestyle="--", linewidth=0.9,
                          label="into the concat"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
              ncol=min(len(handles), 2 if num_rows < 3 else 4), frameon=False, fontsize=7.5)
    if title is None:
        title = (f"DPC cell{f' {cell.name}' if cell.name else ''}: "
                 f"{cell.num_branches} branch{'es' if cell.num_branches > 1 else ''}")
    ax.set_title(title, fontsize=10)
    return _save(figure, out_path)


# --------------------------------------------------------------------------------------
# DPC search progress.


#: Marker, colour and legend text per trial origin (see ``DPCOracle.origins``).
_ORIGIN_STYLES = {
    "uniform": ("o", "#1f77b4", "uniform sample"),
    "initial": ("o", "#1f77b4", "uniform sample"),
    "mutation": ("^", "#e67e22", "mutation of an earlier cell"),
    "enumeration": ("s", "#8e44ad", "enumeration"),
}
_OTHER_ORIGIN = ("D", "#7f8c8d", "other origin")
_BEST_COLOR = "#c0392b"


def _finite(value, where):
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return value


def trial_order(rows):
    """Leaderboard rows in trial order, as ``[(trial number, row), ...]``.

    Trial ids are KerasTuner's zero-padded numbers: the number is the trial's. Other
    ids are sorted as strings and numbered 0, 1, ... Raises ``ValueError`` naming the
    first bad row (not a dict, no ``trial_id`` or ``val_miou``, a non-finite score, a
    repeated id).
    """
    if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
        raise ValueError(f"rows: expected a list of leaderboard rows (dicts), got "
                         f"{type(rows).__name__}")
    rows, seen = list(rows), set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"rows[{i}]: expected a leaderboard row (a dict), got "
                             f"{type(row).__name__}")
        missing = [key for key in ("trial_id", "val_miou") if key not in row]
        if missing:
            raise ValueError(f"rows[{i}]: missing {' and '.join(missing)}")
        _finite(row["val_miou"], f"rows[{i}].val_miou")
        if str(row["trial_id"]) in seen:
            raise ValueError(f"rows[{i}]: trial {row['trial_id']!r} appears twice")
        seen.add(str(row["trial_id"]))
    if all(str(row["trial_id"]).isdigit() for row in rows):
        return sorted(((int(row["trial_id"]), row) for row in rows), key=lambda p: p[0])
    return list(enumerate(sorted(rows, key=lambda row: str(row["trial_id"]))))


def plot_dpc_search(rows, out_path, baseline=None):
    """Draws the DPC search's progress (Chen et al. 2018, §3.3).

    One marker per completed trial at (trial number, val mIoU): its shape and colour
    tell how the oracle proposed the cell (uniform sample, mutation, ...), hollow when
    the trial was stopped early (scored at its last evaluation). A step line shows the
    best so far and a star the best trial; with ``baseline`` a dashed line marks the
    median of the random cells trained with the full budget.

    Args:
      rows: leaderboard rows (dicts with ``trial_id``, ``val_miou`` and optionally
        ``stopped_early``, ``origin``; see ``dpc_tuner.leaderboard``), in any order.
        May be empty (a search with no completed trial yet).
      out_path: where to write the PNG.
      baseline: optional summary of ``dpc_tuner.random_baseline`` (uses
        ``median_random_miou`` and the number of ``entries``).

    Returns:
      ``out_path``.
    """
    points = trial_order(rows)
    median = None
    if baseline is not None:
        if not isinstance(baseline, dict) or "median_random_miou" not in baseline:
            raise ValueError("baseline: expected the random_baseline summary (a dict with "
                             f"'median_random_miou' and 'entries'), got {baseline!r:.200}")
        median = _finite(baseline["median_random_miou"], "baseline.median_random_miou")
    figure = Figure(figsize=(7.5, 4.0))
    ax = figure.add_subplot()
    size = 42 if len(points) <= 60 else 24 if len(points) <= 300 else 10

    groups = {}
    for number, row in points:
        style = _ORIGIN_STYLES.get(row.get("origin"), _OTHER_ORIGIN)
        groups.setdefault(style, []).append((number, float(row["val_miou"]),
                                             bool(row.get("stopped_early"))))
    for (marker, color, label), group in groups.items():
        xs, ys, hollow = (np.array(v) for v in zip(*group))
        ax.scatter(xs[~hollow], ys[~hollow], s=size, marker=marker, color=color,
                   edgecolor=color, linewidth=1.0, alpha=0.85, zorder=3, label=label)
        ax.scatter(xs[hollow], ys[hollow], s=size, marker=marker, facecolor="none",
                   edgecolor=color, linewidth=1.0, alpha=0.85, zorder=3)
    if any(row.get("stopped_early") for _, row in points):
        ax.scatter([], [], s=size, marker="o", facecolor="none", edgecolor="#555555",
                   label="hollow: stopped early")
    if points:
        numbers = [number for number, _ in points]
        best = np.maximum.accumulate([float(row["val_miou"]) for _, row in points])
        ax.step(numbers, best, where="post", color=_BEST_COLOR, linewidth=1.6, zorder=2,
                label="best so far")
        top_number, top_row = max(points, key=lambda p: (float(p[1]["val_miou"]), -p[0]))
        ax.scatter([top_number], [top_row["val_miou"]], s=170, marker="*",
                   color=_BEST_COLOR, edgecolor="white", linewidth=0.6, zorder=4)
        ax.annotate(f"trial {top_row['trial_id']}: {float(top_row['val_miou']):.3f}",
                    (top_number, float(top_row["val_miou"])), xytext=(6, 7),
                    textcoords="offset points", fontsize=8, color=_BEST_COLOR, zorder=5)
        ax.set_xlim(min(numbers) - 0.8, max(numbers) + 0.8)
        plural = "s" if len(points) > 1 else ""
        title = (f"DPC search: {len(points)} completed trial{plural}, best val mIoU "
                 f"{float(top_row['val_miou']):.3f}")
    else:
        ax.text(0.5, 0.5, "no completed trial yet", ha="center", va="center",
                transform=ax.transAxes, fontsize=10, color="#7f8c8d")
        title = "DPC search: no completed trial yet"
    if median is not None:
        count = len(baseline.get("entries") or ())
        ax.axhline(median, color="#34495e", linestyle="--", linewidth=1.2, zorder=1,
                   label=f"median of {count} random cell{'s' if count != 1 else ''} "
                         f"({median:.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("val mIoU (proxy)")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False,
                  fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(figure, out_path)
