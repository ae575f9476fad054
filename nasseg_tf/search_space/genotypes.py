"""Genotypes: small frozen value objects for a searched cell and network path.

Format (the Auto-DeepLab search writes it, the zoo reads it)::

    {
      "cell": {"blocks": [[["atrous_conv_5x5", 1], ["sep_conv_3x3", 0]], ...]},
      "path": [0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1]
    }

* ``cell.blocks[i]`` holds block i's two edges ``[op, input]``. Inputs index the
  hidden states: 0 = H^{l-1} (previous cell), 1 = H^{l-2}, 2 + k = block k (k < i).
  This is the official release's ``hiddenstate_indices`` convention.
* ``path[l]`` is the resolution level of cell l: level i is downsample 4·2^i
  (0..3 = 4, 8, 16, 32). The first cell is at level 0 or 1 (the stem ends at 4) and
  consecutive cells differ by at most one level (Liu et al. 2019, §3.2).

Reference: Liu et al., "Auto-DeepLab", CVPR 2019; official genotype in SPEC §2.5.
"""

import dataclasses
import json
from importlib import resources

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_text
from nasseg_tf.search_space.autodeeplab import (
    NUM_LEVELS, OFFICIAL_TO_OURS, OURS_TO_OFFICIAL, PRIMITIVES, ZERO_OP)


#: The genotype JSON format this package writes (and the newest it reads).
GENOTYPE_VERSION = 1


class GenotypeError(ValueError):
    """A genotype failed validation; the message names the bad field."""


@dataclasses.dataclass(frozen=True)
class Edge:
    """One edge of a block: apply ``op`` to hidden state ``input``."""

    op: str
    input: int

    def to_config(self):
        return [self.op, self.input]


@dataclasses.dataclass(frozen=True)
class CellGenotype:
    """A derived Auto-DeepLab cell: B blocks of two edges, output = concat of blocks."""

    blocks: tuple

    @property
    def num_blocks(self):
        return len(self.blocks)

    def to_config(self):
        return {"blocks": [[e.to_config() for e in block] for block in self.blocks]}

    @classmethod
    def from_config(cls, config, field="cell"):
        """Builds a cell from its config; raises :class:`GenotypeError` naming the field."""
        if not isinstance(config, dict) or "blocks" not in config:
            raise GenotypeError(f"{field}: expected an object with key 'blocks', got {config!r}")
        raw = config["blocks"]
        if not isinstance(raw, (list, tuple)):
            raise GenotypeError(f"{field}.blocks: expected a list, got {type(raw).__name__}")
        blocks = []
        for i, block in enumerate(raw):
            where = f"{field}.blocks[{i}]"
            if not isinstance(block, (list, tuple)) or len(block) != 2:
                raise GenotypeError(f"{where}: expected two edges [op, input], got {block!r}")
            edges = []
            for j, edge in enumerate(block):
                if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                        or not isinstance(edge[0], str) or isinstance(edge[1], bool)
                        or not isinstance(edge[1], int)):
                    raise GenotypeError(
                        f"{where}[{j}]: expected [op name, input index], got {edge!r}")
                edges.append(Edge(edge[0], edge[1]))
            blocks.append(tuple(edges))
        cell = cls(tuple(blocks))
        cell.validate(field)
        return cell

    def validate(self, field="cell"):
        """Checks op names and input indices; returns self."""
        if not self.blocks:
            raise GenotypeError(f"{field}.blocks: a cell needs at least one block")
        for i, block in enumerate(self.blocks):
            if len(block) != 2:
                raise GenotypeError(f"{field}.blocks[{i}]: expected 2 edges, got {len(block)}")
            for j, edge in enumerate(block):
                where = f"{field}.blocks[{i}][{j}]"
                if edge.op not in PRIMITIVES:
                    raise GenotypeError(
                        f"{where}.op: unknown op {edge.op!r}; known ops: "
                        f"{', '.join(PRIMITIVES)}")
                if not 0 <= edge.input < 2 + i:
                    raise GenotypeError(
                        f"{where}.input: {edge.input} out of range; block {i} may take "
                        f"inputs 0..{1 + i} (0 = H^(l-1), 1 = H^(l-2), 2+k = block k)")
        return self


def validate_path(path, field="path"):
    """Checks a network path of resolution levels (see module docstring)."""
    if not isinstance(path, (list, tuple)) or not path:
        raise GenotypeError(f"{field}: expected a non-empty list of levels, got {path!r}")
    for l, level in enumerate(path):
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < NUM_LEVELS:
            raise GenotypeError(
                f"{field}[{l}]: level {level!r} out of range 0..{NUM_LEVELS - 1} "
                "(downsample 4, 8, 16, 32)")
    if path[0] not in (0, 1):
        raise GenotypeError(
            f"{field}[0]: the first layer must be at level 0 or 1 (downsample 4 or 8), "
            f"got level {path[0]}")
    for l in range(1, len(path)):
        if abs(path[l] - path[l - 1]) > 1:
            raise GenotypeError(
                f"{field}[{l}]: jump from level {path[l - 1]} to {path[l]}; consecutive "
                "layers may differ by at most one level")


@dataclasses.dataclass(frozen=True)
class NetworkGenotype:
    """A derived Auto-DeepLab network: a cell shared by all layers plus a path.

    Its JSON carries ``"version"`` (:data:`GENOTYPE_VERSION`); files written before the
    field existed have none and read as version 1. A file of a newer version than this
    package knows is refused with a message saying so.
    """

    cell: CellGenotype
    path: tuple
    name: str = ""

    @property
    def downsample_rates(self):
        return tuple(4 * 2 ** level for level in self.path)

    @property
    def output_stride(self):
        return 4 * 2 ** self.path[-1]

    def describe(self):
        """Human-readable lines: the path (downsample rates) and each block's two edges.

        Inputs are written ``h0`` = H^{l-1}, ``h1`` = H^{l-2}, ``h{2+k}`` = block k.
        """
        lines = [f"path (downsample per layer): {list(self.downsample_rates)}"]
        for i, block in enumerate(self.cell.blocks):
            lines.append(f"block {i}: " + " + ".join(f"{e.op}(h{e.input})" for e in block))
        return lines

    def validate(self):
        self.cell.validate("cell")
        validate_path(list(self.path), "path")
        return self

    def to_config(self):
        config = {"version": GENOTYPE_VERSION, "cell": self.cell.to_config(),
                  "path": list(self.path)}
        if self.name:
            config["name"] = self.name
        return config

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict):
            raise GenotypeError(f"genotype: expected a JSON object, got {type(config).__name__}")
        for key in ("cell", "path"):
            if key not in config:
                raise GenotypeError(f"genotype: missing required key {key!r}")
        unknown = set(config) - {"version", "cell", "path", "name"}
        if unknown:
            raise GenotypeError(f"genotype: unknown keys {sorted(unknown)}")
        version = config.get("version", 1)
        if (isinstance(version, bool) or not isinstance(version, int)
                or not 1 <= version <= GENOTYPE_VERSION):
            raise GenotypeError(
                f"genotype.version: {version!r} is not a version this package reads "
                f"(1..{GENOTYPE_VERSION}); a newer nasseg_tf wrote it?")
        cell = CellGenotype.from_config(config["cell"], "cell")
        validate_path(config["path"], "path")
        return cls(cell, tuple(config["path"]), str(config.get("name", "")))

    def to_json(self):
        """Readable JSON: one line per block; ``json.loads`` gives :meth:`to_config`."""
        blocks = ",\n".join(
            "      " + json.dumps(block) for block in self.to_config()["cell"]["blocks"])
        lines = ["{", f'  "version": {GENOTYPE_VERSION},']
        if self.name:
            lines.append(f'  "name": {json.dumps(self.name)},')
        lines += ['  "cell": {"blocks": [', blocks, "  ]},",
                  f'  "path": {json.dumps(list(self.path))}', "}"]
        return "\n".join(lines)

    @classmethod
    def from_json(cls, text):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"genotype: invalid JSON ({e})") from None
        return cls.from_config(config)

    def save(self, path):
        """Writes the JSON atomically (temp file + rename)."""
        atomic_write_text(path, self.to_json() + "\n")


# --------------------------------------------------------------------------------------
# Official list format <-> ours.


def from_official(operations, hiddenstate_indices, backbone, name=""):
    """Converts the official release's lists (SPEC §2.5) into a NetworkGenotype."""
    if len(operations) != len(hiddenstate_indices) or len(operations) % 2:
        raise GenotypeError(
            "official genotype: 'operations' and 'hiddenstate_indices' must have the same "
            f"even length, got {len(operations)} and {len(hiddenstate_indices)}")
    blocks = []
    for i in range(len(operations) // 2):
        edges = []
        for j in (2 * i, 2 * i + 1):
            op = operations[j]
            if op not in OFFICIAL_TO_OURS:
                raise GenotypeError(
                    f"official genotype: operations[{j}]: unknown op {op!r}; known: "
                    f"{', '.join(sorted(OFFICIAL_TO_OURS))}")
            edges.append(Edge(OFFICIAL_TO_OURS[op], int(hiddenstate_indices[j])))
        blocks.append(tuple(edges))
    genotype = NetworkGenotype(CellGenotype(tuple(blocks)), tuple(int(b) for b in backbone),
                               name)
    return genotype.validate()


def to_official(genotype):
    """Converts a NetworkGenotype to the official lists (``used_hiddenstates`` included:
    the two cell inputs are marked used, so the cell output is the concat of all blocks)."""
    operations, indices = [], []
    for block in genotype.cell.blocks:
        for edge in block:
            operations.append(OURS_TO_OFFICIAL[edge.op])
            indices.append(edge.input)
    used = [1, 1] + [0] * genotype.cell.num_blocks
    return {
        "operations": operations,
        "used_hiddenstates": used,
        "hiddenstate_indices": indices,
        "backbone": list(genotype.path),
    }


# --------------------------------------------------------------------------------------
# Published genotypes shipped with the package.

def published_names(kind):
    """Stems of the JSON files shipped in ``nasseg_tf/search_space/published/<kind>``."""
    folder = resources.files("nasseg_tf.search_space").joinpath("published", kind)
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")))


def read_published(kind, stem):
    """The text of the shipped file ``published/<kind>/<stem>.json``."""
    return resources.files("nasseg_tf.search_space").joinpath(
        "published", kind, f"{stem}.json").read_text(encoding="utf-8")


def published_genotypes():
    """Names of the genotypes shipped in ``nasseg_tf/search_space/published/genotypes``."""
    return published_names("genotypes")


def load_genotype(name_or_path):
    """Loads a genotype by published name (e.g. ``"autodeeplab_cityscapes"``) or path.

    A :class:`NetworkGenotype` passes through unchanged; a dict is parsed as a config.
    """
    if isinstance(name_or_path, NetworkGenotype):
        return name_or_path.validate()
    if isinstance(name_or_path, dict):
        return NetworkGenotype.from_config(name_or_path)
    text = None
    if fileio.exists(str(name_or_path)):  # local or remote (gs://) file
        text = fileio.read_text(str(name_or_path))
        where = str(name_or_path)
    else:
        known = published_genotypes()
        if name_or_path not in known:
            raise GenotypeError(
                f"unknown genotype {name_or_path!r}: not a file and not a published name; "
                f"published: {', '.join(known)}")
        text = read_published("genotypes", name_or_path)
        where = f"published genotype {name_or_path!r}"
    try:
        return NetworkGenotype.from_json(text)
    except GenotypeError as e:
        raise GenotypeError(f"{where}: {e}") from None


def is_zero_op(op):
    return op == ZERO_OP
