"""What a Dense Prediction Cell costs: Multiply-Adds, params and latency on this CPU.

The cost of a cell is that of the context module alone (the DPC cell's branches) at the
paper's feature size, the basis of DPC Table 1 (Chen et al. 2018; SPEC §3.4): a full
Cityscapes frame 1025×2049 at output stride 16 gives 65×129 feature positions, the
backbone is MobileNet-v2 (320 channels), every branch has 256 filters. With these
defaults the published top-1 cell costs 356,160 params and 2.99B Multiply-Adds, and the
MobileNet-v2 ASPP 2.82B, as in the table.

* ``madds`` and ``params`` come from the counter (:mod:`nasseg_tf.counting`): conv
  weights and conv Multiply-Adds of the branches, without the concat projection and
  without batch norm (the table's basis). They are exact and reproducible.
* ``latency_ms`` is the median wall time of ``latency_runs`` forward passes (batch 1,
  inference mode, a compiled function; ``latency_warmup`` first calls excluded) of the
  whole module — branches, batch norm, concat and projection — on this machine. It is
  cached per cell in a JSON file (:class:`LatencyCache`) keyed by the cell's JSON hash,
  the host name and the thread count, written atomically under a lock after every
  measurement, so a rerun or a resumed search measures each cell once per host.

The size and the module's shape are a :class:`CellCostConfig` (gin ``DPCCost``).
"""

import copy
import dataclasses
import functools
import hashlib
import math
import os
import socket
import statistics
import time

import keras
import numpy as np

from nasseg_tf import fileio
from nasseg_tf.counting import count
from nasseg_tf.fileio import atomic_write_json, exclusive_lock
from nasseg_tf.layers.dpc import DensePredictionCell
from nasseg_tf.layers.heads import ASPP
from nasseg_tf.search_space.dpc import load_dpc_cell

#: Cost metric names (the leaderboard's columns, the Pareto oracle's ``pareto_cost``).
COSTS = ("madds", "params", "latency_ms")
#: The references drawn beside a front: the published top-1 cell and MobileNet-v2 ASPP.
REFERENCE_CELL = "dpc_top1_cityscapes"
ASPP_RATES = (6, 12, 18)  # DeepLabv3+ at output stride 16 (SPEC §3.4's ASPP row)
_CONTEXT = "context"


@dataclasses.dataclass(frozen=True)
class CellCostConfig:
    """Where a cell's cost is taken (gin ``DPCCost``); defaults: DPC Table 1's basis.

    ``feature_size`` (65×129: a 1025×2049 frame at output stride 16), ``channels`` of
    the backbone features (320: MobileNet-v2), ``filters`` of every branch (256),
    ``output_stride`` (atrous rates × 16 / output_stride); ``latency_runs`` timed
    forward passes after ``latency_warmup`` untimed ones.
    """

    GIN_NAME = "DPCCost"

    feature_size: tuple = (65, 129)
    channels: int = 320
    filters: int = 256
    output_stride: int = 16
    latency_runs: int = 10
    latency_warmup: int = 2

    def __post_init__(self):
        size = tuple(self.feature_size)
        if len(size) != 2 or any(int(s) < 1 for s in size):
            raise ValueError(f"DPCCost.feature_size: expected two positive integers, got "
                             f"{self.feature_size!r}")
        for name in ("channels", "filters", "latency_runs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DPCCost.{name}: expected a positive integer, got "
                                 f"{getattr(self, name)!r}")
        if int(self.latency_warmup) < 0:
            raise ValueError(f"DPCCost.latency_warmup: expected >= 0, got "
                             f"{self.latency_warmup!r}")

    def input_shape(self):
        return (1, *(int(s) for s in self.feature_size), int(self.channels))


def context_module(cell, cfg=None):
    """A Keras model of the context module alone on features of ``cfg``'s size.

    ``cell``: anything :func:`load_dpc_cell` accepts, or ``"aspp"`` for the
    MobileNet-v2 DeepLabv3+ ASPP (1×1, three separable 3×3 at rates 6, 12, 18 × 16 / OS,
    image pooling), the reference of DPC Table 1.
    """
    cfg = cfg or CellCostConfig()
    inputs = keras.Input(cfg.input_shape()[1:], batch_size=1)
    if isinstance(cell, str) and cell == "aspp":
        multiplier = 16 // cfg.output_stride
        layer = ASPP(cfg.filters, tuple(r * multiplier for r in ASPP_RATES),
                     separable=True, image_pooling=True,
                     output_stride=cfg.output_stride, name=_CONTEXT)
    else:
        layer = DensePredictionCell(load_dpc_cell(cell), cfg.filters, cfg.output_stride,
                                    name=_CONTEXT)
    return keras.Model(inputs, layer(inputs), name="context_module")


def count_cost(cell, cfg=None):
    """``{"madds": ..., "params": ...}`` of the module's branches (module docstring)."""
    cfg = cfg or CellCostConfig()
    report = count(context_module(cell, cfg), cfg.input_shape()[1:3],
                   channels=cfg.channels)
    params, madds = report.subtotal(_CONTEXT, ("projection",))
    return {"madds": int(madds), "params": int(params)}


@functools.lru_cache(maxsize=8)
def _reference_costs(cfg):
    return {REFERENCE_CELL: count_cost(REFERENCE_CELL, cfg),
            "aspp": count_cost("aspp", cfg)}


def reference_costs(cfg=None):
    """Counted costs of the published top-1 cell and of ASPP, for the front's picture:
    ``{"dpc_top1_cityscapes": {...}, "aspp": {...}}`` (counted once per process)."""
    return copy.deepcopy(_reference_costs(cfg or CellCostConfig()))


def thread_count():
    """Threads TensorFlow's ops may use (the intra-op setting; 0 means every core)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return int(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count())


def cell_hash(cell):
    """A short stable hash of the cell's canonical JSON (:meth:`DPCCell.key`)."""
    return hashlib.sha256(load_dpc_cell(cell).key().encode("utf-8")).hexdigest()[:16]


def measure_latency_ms(cell, cfg=None, timer=time.perf_counter):
    """Median milliseconds of a forward pass of the context module (module docstring)."""
    cfg = cfg or CellCostConfig()
    model = context_module(cell, cfg)
    x = np.random.default_rng(0).standard_normal(cfg.input_shape()).astype("float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        forward = tf.function(lambda v: model(v, training=False), autograph=False)
        x = tf.constant(x)
    elif keras.backend.backend() == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        forward = jax.jit(lambda v: model(v, training=False))
    else:
        def forward(v):
            return model(v, training=False)
    times = []
    for i in range(int(cfg.latency_warmup) + int(cfg.latency_runs)):
        start = timer()
        keras.ops.convert_to_numpy(forward(x))
        if i >= cfg.latency_warmup:
            times.append(timer() - start)
    return 1000.0 * statistics.median(times)


class LatencyCache:
    """Measured latencies in a JSON file, keyed by (cell hash, host, threads).

    The file is ``{"version": 1, "entries": {key: {"latency_ms", "cell", "host",
    "threads", "feature_size", "channels", "filters", "output_stride", "runs"}}}``; the
    key also carries the :class:`CellCostConfig` (a different size is another entry).
    Every measurement is written at once (atomically, under a lock shared by the
    processes of one host), so a killed search loses at most the cell it was timing.

    Args:
      path: the JSON file.
      cfg: a :class:`CellCostConfig`.
      measure: ``measure(cell, cfg) -> ms`` (default :func:`measure_latency_ms`).
    """

    VERSION = 1

    def __init__(self, path, cfg=None, measure=None):
        self.path = path
        self.cfg = cfg or CellCostConfig()
        self.measure = measure or measure_latency_ms
        self.host = socket.gethostname()

    def key(self, cell):
        c = self.cfg
        size = "x".join(str(int(s)) for s in c.feature_size)
        return (f"{cell_hash(cell)}|{self.host}|{thread_count()}|{size}x{c.channels}"
                f"|f{c.filters}|os{c.output_stride}")

    def _read(self):
        if not fileio.exists(self.path):
            return {}
        try:
            data = fileio.read_json(self.path)
            entries = data["entries"]
            if not isinstance(entries, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self.path}: not a latency cache (expected JSON with "
                             f"'entries'); delete it to measure again") from None
        return entries

    def get(self, cell):
        """The cached milliseconds of ``cell`` on this host, or None."""
        entry = self._read().get(self.key(cell))
        return None if entry is None else float(entry["latency_ms"])

    def latency_ms(self, cell):
        """The cached value, or a new measurement (then saved)."""
        cell = load_dpc_cell(cell)
        cached = self.get(cell)
        if cached is not None:
            return cached
        value = float(self.measure(cell, self.cfg))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"latency of {cell.describe()}: got {value!r} ms")
        folder = os.path.dirname(os.path.abspath(self.path))
        fileio.makedirs(folder)
        with exclusive_lock(self.path + ".lock"):
            entries = self._read()  # another process may have added entries
            entries[self.key(cell)] = {
                "latency_ms": value, "cell": cell.to_config(), "host": self.host,
                "threads": thread_count(), "feature_size": list(self.cfg.feature_size),
                "channels": self.cfg.channels, "filters": self.cfg.filters,
                "output_stride": self.cfg.output_stride, "runs": self.cfg.latency_runs}
            atomic_write_json(self.path, {"version": self.VERSION, "entries": entries},
                              indent=1, sort_keys=True)
        return value


def cost_fn(names, cfg=None, latency_cache=None):
    """``fn(cell) -> {name: value}`` for the cost ``names`` (a subset of :data:`COSTS`).

    ``latency_cache``: the JSON file of :class:`LatencyCache` (needed for
    ``latency_ms``). Raises ``ValueError`` listing the known costs for an unknown name.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in COSTS]
    if unknown:
        raise ValueError(f"unknown DPC cell cost {unknown[0]!r}; known costs: "
                         f"{', '.join(COSTS)}")
    cfg = cfg or CellCostConfig()
    if "latency_ms" in names and not latency_cache:
        raise ValueError("the latency_ms cost needs a latency cache file")
    cache = LatencyCache(latency_cache, cfg) if "latency_ms" in names else None

    def costs(cell):
        out = {}
        if {"madds", "params"} & set(names):
            counted = count_cost(cell, cfg)
            out.update({k: counted[k] for k in ("madds", "params") if k in names})
        if cache is not None:
            out["latency_ms"] = cache.latency_ms(cell)
        return out

    return costs


def pareto_front(points):
    """Indices of the non-dominated ``(miou, cost)`` points (mIoU up, cost down), in
    order of increasing cost.

    A point is dominated when another has at least its mIoU and at most its cost and
    is better in one of the two; equal points do not dominate each other (both stay).
    A sweep over the points sorted by cost: O(n log n).
    """
    points = [(float(m), float(c)) for m, c in points]
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front, best_cheaper, i = [], -math.inf, 0
    while i < len(order):
        cost = points[order[i]][1]
        group = []
        while i < len(order) and points[order[i]][1] == cost:
            group.append(order[i])
            i += 1
        top = points[group[0]][0]  # the group's highest mIoU (sorted)
        if top > best_cheaper:
            front.extend(j for j in group if points[j][0] == top)
        best_cheaper = max(best_cheaper, top)
    return front
