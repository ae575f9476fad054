"""The Dense Prediction Cell search space (Chen et al. 2018, §3; SPEC §3.1–3.2).

A DPC cell is B branches. Branch i applies one op to one input: the backbone features
(``input = -1``) or the output of an earlier branch ``k < i``. The cell's output is the
concatenation of all branch outputs (then dropout and a 1×1 projection, see
:class:`nasseg_tf.layers.dpc.DensePredictionCell`).

JSON format (the official release's, read verbatim)::

    [{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1},
     {"op": "pyramid_pooling", "grid_size": [2, 4], "input": 0}, ...]

* ``op = "conv"``: ``kernel`` 1 (a 1×1 conv; ``rate`` is irrelevant and normalised to
  [1, 1]) or 3 (a 3×3 atrous *separable* conv with rate ``[r_h, r_w]``).
* ``op = "pyramid_pooling"``: average pooling on a ``grid_size = [g_h, g_w]`` grid,
  then 1×1 conv, resized back. ``kernel``/``rate`` keys, if present, are ignored there
  (the official files may carry them).

The search space (81 ops per branch: one 1×1 conv, 8×8 atrous rates from
{1, 3, 6, 9, 12, 15, 18, 21}, 4×4 grids from {1, 2, 4, 8}; branch i picks one of i + 1
inputs) has ``B!·81^B`` = 418,414,128,120 ≈ 4.2×10^11 cells at B = 5.
"""

import dataclasses
import itertools
import json
import math
import os

import numpy as np

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_text
from nasseg_tf.search_space.genotypes import GenotypeError, published_names, read_published

OPS = ("conv", "pyramid_pooling")
SEARCH_RATES = (1, 3, 6, 9, 12, 15, 18, 21)
SEARCH_GRIDS = (1, 2, 4, 8)
NUM_BRANCHES = 5
_KEYS = {"op", "kernel", "rate", "grid_size", "input"}


def _int_pair(value, where, what):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise GenotypeError(f"{where}.{what}: expected two positive integers, got {value!r}")
    return (int(value[0]), int(value[1]))


@dataclasses.dataclass(frozen=True)
class DPCBranch:
    """One branch: ``op`` applied to ``input`` (-1 = backbone features, k = branch k)."""

    op: str
    input: int
    kernel: int = 3
    rate: tuple = (1, 1)
    grid_size: tuple = (1, 1)

    def to_config(self):
        """The official JSON object (only the keys that matter for the op)."""
        if self.op == "conv":
            return {"kernel": self.kernel, "rate": list(self.rate), "op": "conv",
                    "input": self.input}
        return {"op": "pyramid_pooling", "grid_size": list(self.grid_size),
                "input": self.input}

    @classmethod
    def from_config(cls, config, index=0, field="cell"):
        where = f"{field}[{index}]"
        if not isinstance(config, dict):
            raise GenotypeError(f"{where}: expected a JSON object, got {config!r}")
        unknown = set(config) - _KEYS
        if unknown:
            raise GenotypeError(f"{where}: unknown keys {sorted(unknown)}; known: "
                                f"{sorted(_KEYS)}")
        op = config.get("op")
        if op not in OPS:
            raise GenotypeError(f"{where}.op: unknown op {op!r}; known ops: {', '.join(OPS)}")
        if "input" not in config:
            raise GenotypeError(f"{where}: missing key 'input'")
        inp = config["input"]
        if isinstance(inp, bool) or not isinstance(inp, int):
            raise GenotypeError(f"{where}.input: expected an integer, got {inp!r}")
        if op == "conv":
            kernel = config.get("kernel")
            if kernel not in (1, 3) or isinstance(kernel, bool):
                raise GenotypeError(f"{where}.kernel: conv kernel must be 1 or 3, got "
                                    f"{kernel!r}")
            rate = _int_pair(config.get("rate", [1, 1]), where, "rate")
            if kernel == 1:
                rate = (1, 1)
            branch = cls("conv", inp, kernel, rate)
        else:
            if "grid_size" not in config:
                raise GenotypeError(f"{where}: pyramid_pooling needs 'grid_size'")
            grid = _int_pair(config["grid_size"], where, "grid_size")
            branch = cls("pyramid_pooling", inp, grid_size=grid)
        return branch.validate(index, field)

    def validate(self, index, field="cell"):
        where = f"{field}[{index}]"
        if not -1 <= self.input < index:
            raise GenotypeError(
                f"{where}.input: {self.input} is not allowed; branch {index} may take -1 "
                f"(backbone features) or an earlier branch 0..{index - 1}")
        return self

    def describe(self):
        src = "F" if self.input < 0 else f"Y{self.input}"
        if self.op == "conv" and self.kernel == 1:
            return f"conv1x1({src})"
        if self.op == "conv":
            return f"sep3x3_r{self.rate[0]}x{self.rate[1]}({src})"
        return f"pool_{self.grid_size[0]}x{self.grid_size[1]}({src})"


@dataclasses.dataclass(frozen=True)
class DPCCell:
    """A Dense Prediction Cell: a tuple of :class:`DPCBranch`; value object."""

    branches: tuple
    name: str = dataclasses.field(default="", compare=False)  # not part of identity

    @property
    def num_branches(self):
        return len(self.branches)

    def validate(self):
        if not self.branches:
            raise GenotypeError("cell: a DPC cell needs at least one branch")
        for i, branch in enumerate(self.branches):
            branch.validate(i)
        return self

    def to_config(self):
        return [b.to_config() for b in self.branches]

    @classmethod
    def from_config(cls, config, name=""):
        if not isinstance(config, (list, tuple)):
            raise GenotypeError(f"cell: expected a JSON list of branches, got "
                                f"{type(config).__name__}")
        branches = tuple(DPCBranch.from_config(c, i) for i, c in enumerate(config))
        return cls(branches, name).validate()

    def to_json(self):
        """One branch per line, the official format; ``json.loads`` gives to_config()."""
        return "[" + ",\n ".join(json.dumps(c) for c in self.to_config()) + "]"

    @classmethod
    def from_json(cls, text, name=""):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"DPC cell: invalid JSON ({e})") from None
        return cls.from_config(config, name)

    def key(self):
        """A canonical string: equal cells (as computations) have equal keys."""
        return json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"))

    def describe(self):
        return " | ".join(f"Y{i}={b.describe()}" for i, b in enumerate(self.branches))

    def save(self, path):
        """Writes the JSON atomically (temp file + rename)."""
        atomic_write_text(path, self.to_json() + "\n")


# --------------------------------------------------------------------------------------
# Published cells shipped with the package (nasseg_tf/search_space/published/dpc_cells).

_ALIASES = {"dpc_top1_cityscapes": "dense_prediction_cell_branch5_top1_cityscapes"}


def published_dpc_cells():
    """Names of the DPC cell JSON files shipped with the package (and their aliases)."""
    return tuple(sorted(published_names("dpc_cells") + tuple(_ALIASES)))


def load_dpc_cell(spec, allow_files=True):
    """A :class:`DPCCell` from a cell, a config list, a published name or a JSON path.

    Published names: ``dense_prediction_cell_branch5_top1_cityscapes`` (the official
    file name) and its alias ``dpc_top1_cityscapes``. With ``allow_files=False``
    (layers: they take value objects or configs, never file paths) a path is refused.
    """
    if isinstance(spec, DPCCell):
        return spec.validate()
    if isinstance(spec, (list, tuple)):
        return DPCCell.from_config(list(spec))
    if not allow_files and str(spec) not in published_dpc_cells():
        raise GenotypeError(
            f"DPC cell {spec!r}: expected a DPCCell, a config list or a published name "
            f"({', '.join(published_dpc_cells())}); load a JSON file with "
            "nasseg_tf.search_space.dpc.load_dpc_cell first")
    spec = str(spec)
    if fileio.exists(spec):  # local or remote (gs://) file
        text, where, name = fileio.read_text(spec), spec, os.path.basename(spec)[:-5]
    else:
        stem = _ALIASES.get(spec, spec)
        if spec not in published_dpc_cells():
            raise GenotypeError(
                f"unknown DPC cell {spec!r}: not a file and not a published name; "
                f"published: {', '.join(published_dpc_cells())}")
        text = read_published("dpc_cells", stem)
        where, name = f"published DPC cell {spec!r}", stem
    try:
        return DPCCell.from_json(text, name)
    except GenotypeError as e:
        raise GenotypeError(f"{where}: {e}") from None


# --------------------------------------------------------------------------------------
# The search space.


class DPCSearchSpace:
    """The DPC space: sample, mutate, encode to KerasTuner values, decode, size.

    Ops are indexed 0..num_ops-1: index 0 is the 1×1 conv, then the separable 3×3 convs
    (rate pairs, row-major over ``rates × rates``), then pyramid pooling (grid pairs).
    A cell encodes to ``{"branch{i}_op": op index, "branch{i}_input": input}``.

    Args:
      num_branches: B (5 in the paper).
      rates: atrous rates per axis (the paper's 8).
      grids: pooling grid sizes per axis (the paper's 4).
    """

    def __init__(self, num_branches=NUM_BRANCHES, rates=SEARCH_RATES, grids=SEARCH_GRIDS):
        if int(num_branches) < 1:
            raise ValueError(f"num_branches must be >= 1, got {num_branches}")
        self.num_branches = int(num_branches)
        self.rates = tuple(int(r) for r in rates)
        self.grids = tuple(int(g) for g in grids)
        ops = [("conv", 1, (1, 1), (1, 1))]
        ops += [("conv", 3, (rh, rw), (1, 1)) for rh in self.rates for rw in self.rates]
        ops += [("pyramid_pooling", 3, (1, 1), (gh, gw))
                for gh in self.grids for gw in self.grids]
        self._ops = tuple(ops)
        self._index = {self._op_key(*op[:3], op[3]): i for i, op in enumerate(ops)}

    @staticmethod
    def _op_key(op, kernel, rate, grid):
        if op == "conv":
            return ("conv", kernel, tuple(rate) if kernel == 3 else (1, 1))
        return ("pyramid_pooling", tuple(grid))

    @property
    def num_ops(self):
        return len(self._ops)

    def size(self):
        """Number of distinct cells: ``prod_i (i + 1)·num_ops`` = B!·num_ops^B."""
        return math.factorial(self.num_branches) * self.num_ops ** self.num_branches

    def op_index(self, branch):
        key = self._op_key(branch.op, branch.kernel, branch.rate, branch.grid_size)
        if key not in self._index:
            raise GenotypeError(f"branch {branch.to_config()} is outside the search space "
                                f"(rates {self.rates}, grids {self.grids})")
        return self._index[key]

    def branch(self, op_index, input_index):
        op, kernel, rate, grid = self._ops[op_index]
        return DPCBranch(op, int(input_index), kernel, rate, grid)

    def contains(self, cell):
        try:
            self.encode(cell)
        except GenotypeError:
            return False
        return True

    def cells(self):
        """Every cell of the space, in encoding order (only sensible for small spaces)."""
        per_branch = [[(op, inp) for op in range(self.num_ops) for inp in range(-1, i)]
                      for i in range(self.num_branches)]
        for codes in itertools.product(*per_branch):
            yield DPCCell(tuple(self.branch(op, inp) for op, inp in codes))

    # Sampling ----------------------------------------------------------------------

    def sample(self, rng):
        """A uniformly random cell (``rng``: a ``numpy.random.Generator``)."""
        return DPCCell(tuple(
            self.branch(int(rng.integers(self.num_ops)), int(rng.integers(-1, i)))
            for i in range(self.num_branches))).validate()

    def mutate(self, cell, rng, num_mutations=1):
        """A neighbour of ``cell``: ``num_mutations`` times, one branch's op or input is
        replaced by a different uniformly chosen one (inputs only where branch i > 0
        has a choice). The result always differs from ``cell``."""
        codes = list(self._codes(cell))
        for _ in range(int(num_mutations)):
            i = int(rng.integers(self.num_branches))
            op, inp = codes[i]
            if i > 0 and rng.random() < 0.5:
                choices = [v for v in range(-1, i) if v != inp]
                inp = choices[int(rng.integers(len(choices)))]
            else:
                choices = [v for v in range(self.num_ops) if v != op]
                op = choices[int(rng.integers(len(choices)))]
            codes[i] = (op, inp)
        return DPCCell(tuple(self.branch(o, n) for o, n in codes)).validate()

    # KerasTuner ---------------------------------------------------------------------

    def _codes(self, cell):
        cell = load_dpc_cell(cell)
        if cell.num_branches != self.num_branches:
            raise GenotypeError(f"cell has {cell.num_branches} branches; the space has "
                                f"{self.num_branches}")
        return tuple((self.op_index(b), b.input) for b in cell.branches)

    def encode(self, cell):
        """``{"branch{i}_op": int, "branch{i}_input": int}`` for a cell of the space."""
        values = {}
        for i, (op, inp) in enumerate(self._codes(cell)):
            values[f"branch{i}_op"] = op
            values[f"branch{i}_input"] = inp
        return values

    def decode(self, values):
        """The cell of encoded ``values`` (a dict, or KerasTuner ``HyperParameters``)."""
        if hasattr(values, "values") and not isinstance(values, dict):
            values = values.values
        branches = []
        for i in range(self.num_branches):
            try:
                op, inp = values[f"branch{i}_op"], values[f"branch{i}_input"]
            except KeyError as e:
                raise GenotypeError(f"encoded cell: missing value {e}") from None
            if not 0 <= int(op) < self.num_ops:
                raise GenotypeError(f"encoded cell: branch{i}_op={op} out of range "
                                    f"0..{self.num_ops - 1}")
            branches.append(self.branch(int(op), int(inp)))
        return DPCCell(tuple(branches)).validate()

    def declare(self, hp):
        """Declares the space's hyperparameters on a KerasTuner ``HyperParameters``."""
        for i in range(self.num_branches):
            hp.Int(f"branch{i}_op", 0, self.num_ops - 1)
            if i == 0:
                hp.Fixed("branch0_input", -1)
            else:
                hp.Int(f"branch{i}_input", -1, i - 1)
        return hp

    def config(self):
        return {"num_branches": self.num_branches, "rates": list(self.rates),
                "grids": list(self.grids)}


def random_cells(space, count, seed=0):
    """``count`` distinct uniformly sampled cells (for baselines and tests)."""
    rng = np.random.default_rng(seed)
    seen, cells = set(), []
    while len(cells) < count:
        cell = space.sample(rng)
        if cell.key() not in seen:
            seen.add(cell.key())
            cells.append(cell)
    return cells
