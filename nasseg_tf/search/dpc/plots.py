"""Pictures of the DPC search (Chen et al. 2018): the cell and the search's progress.

* :func:`plot_dpc_cell` — a Dense Prediction Cell as a DAG from the backbone features
  to the concat + 1×1 projection (§3.1);
* :func:`plot_dpc_search` — val mIoU per trial, the best so far and the median of
  random cells (§3.3);
* :func:`plot_pareto_front` — val mIoU against Multiply-Adds with the Pareto front
  (the cost-aware search).

Every function draws with matplotlib's Agg canvas (no display, no pyplot state) and
writes the PNG atomically (:func:`nasseg_tf.visualize.save_figure`).
"""

import math
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator

from nasseg_tf.search.dpc.costs import pareto_front
from nasseg_tf.search_space.dpc import DPCCell, load_dpc_cell
from nasseg_tf.visualize import INCHES_PER_UNIT, NODE_STYLES, save_figure


#: DPC op kinds: legend text, (edge colour, fill colour).
_DPC_KINDS = {
    "conv1x1": ("1×1 conv", ("#7d3c98", "#ebdef0")),
    "sep3x3": ("3×3 atrous separable conv (rate h×w)", ("#b9770e", "#fdebd0")),
    "pool": ("pyramid pooling (grid h×w)", ("#a93226", "#fadbd8")),
}
#: DPC picture geometry, in data units (drawn at INCHES_PER_UNIT, equal aspect).
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
    figure = Figure(figsize=(INCHES_PER_UNIT * (right - left),
                             INCHES_PER_UNIT * (top - bottom)))
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
        NODE_STYLES["input"]["edgecolor"], NODE_STYLES["input"]["facecolor"],
        fontsize=8.5)
    out_height = _DPC_ROW * (num_rows - 1) + height  # spans every row
    box(x_out, y_mid, _DPC_OUT_WIDTH, out_height, "concat\n→ 1×1 conv",
        NODE_STYLES["output"]["edgecolor"], NODE_STYLES["output"]["facecolor"],
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
    return save_figure(figure, out_path)


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
        ``stopped_early``, ``origin``; see :func:`nasseg_tf.search.dpc.leaderboard.leaderboard`), in any order.
        May be empty (a search with no completed trial yet).
      out_path: where to write the PNG.
      baseline: optional summary of :func:`nasseg_tf.search.dpc.rerank.random_baseline` (uses
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
    _finish_axes(ax, "trial", title, grid_axis="y", legend_y=-0.16, ncol=3, fontsize=8)
    return save_figure(figure, out_path)


def _finish_axes(ax, xlabel, title, grid_axis, legend_y, ncol, fontsize):
    """Labels (y: the proxy's val mIoU), grid, no top/right spines, the legend below."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val mIoU (proxy)")
    ax.grid(axis=grid_axis, color="#dddddd", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, legend_y), ncol=ncol,
                  frameon=False, fontsize=fontsize)
    ax.set_title(title, fontsize=10)


# --------------------------------------------------------------------------------------
# The cost-aware search: val mIoU against Multiply-Adds.

_FRONT_COLOR = "#c0392b"
_REFERENCE_STYLES = {"dpc_top1_cityscapes": ("#2c3e50", "-.", "published top-1 DPC cell"),
                     "aspp": ("#16a085", ":", "ASPP (MobileNet-v2, DeepLabv3+)")}


def plot_pareto_front(rows, out_path, references=None):
    """Draws val mIoU against Multiply-Adds: the cost-aware DPC search's trade-off.

    Every completed trial is a dot (hollow when stopped early); the Pareto front of
    (val mIoU up, Multiply-Adds down) is a step line through its members (ringed). The
    ``references`` — ``{name: {"madds": ...}}`` for the published top-1 cell and ASPP,
    counted at the same feature size (:func:`nasseg_tf.search.dpc.costs.reference_costs`)
    — are vertical lines at their cost: their mIoU on this task is not known (the
    legend says so).

    Args:
      rows: leaderboard rows with ``val_miou`` and ``madds`` (rows without ``madds``
        are not drawn), in any order; may be empty.
      out_path: where to write the PNG.
      references: optional ``{name: {"madds": number}}``.

    Returns:
      ``out_path``.
    """
    points = [(number, row) for number, row in trial_order(rows)
              if row.get("madds") is not None]
    references = references or {}
    if not isinstance(references, dict):
        raise ValueError(f"references: expected {{name: {{'madds': ...}}}}, got "
                         f"{type(references).__name__}")
    gmadds = [_finite(row["madds"], f"trial {row['trial_id']}.madds") / 1e9
              for _, row in points]
    mious = [float(row["val_miou"]) for _, row in points]
    figure = Figure(figsize=(7.5, 4.4))
    ax = figure.add_subplot()
    if points:
        hollow = np.array([bool(row.get("stopped_early")) for _, row in points])
        xs, ys = np.array(gmadds), np.array(mious)
        ax.scatter(xs[~hollow], ys[~hollow], s=30, color="#1f77b4", alpha=0.8, zorder=3,
                   label="trial")
        if hollow.any():
            ax.scatter(xs[hollow], ys[hollow], s=30, facecolor="none",
                       edgecolor="#1f77b4", alpha=0.8, zorder=3,
                       label="trial stopped early")
        front = pareto_front(list(zip(mious, gmadds)))
        fx, fy = [gmadds[i] for i in front], [mious[i] for i in front]
        ax.step(fx + [max(gmadds)], fy + [fy[-1]], where="post", color=_FRONT_COLOR,
                linewidth=1.6, zorder=2, label=f"Pareto front ({len(front)} cells)")
        ax.scatter(fx, fy, s=90, facecolor="none", edgecolor=_FRONT_COLOR, linewidth=1.4,
                   zorder=4)
        title = (f"DPC search: val mIoU vs Multiply-Adds, {len(points)} trials, "
                 f"{len(front)} on the front")
    else:
        ax.text(0.5, 0.5, "no completed trial with a cost yet", ha="center",
                va="center", transform=ax.transAxes, fontsize=10, color="#7f8c8d")
        title = "DPC search: no completed trial with a cost yet"
    for name, ref in references.items():
        if not isinstance(ref, dict) or "madds" not in ref:
            raise ValueError(f"references[{name!r}]: expected a dict with 'madds', got "
                             f"{ref!r:.200}")
        x = _finite(ref["madds"], f"references[{name!r}].madds") / 1e9
        color, style, label = _REFERENCE_STYLES.get(name, ("#7f8c8d", "--", name))
        ax.axvline(x, color=color, linestyle=style, linewidth=1.3, zorder=1,
                   label=f"{label}: {x:.2f}B (its mIoU here is not known)")
    _finish_axes(ax, "context module Multiply-Adds (billions)", title, grid_axis="both",
                 legend_y=-0.15, ncol=2, fontsize=7.5)
    return save_figure(figure, out_path)
