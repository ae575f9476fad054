"""The files a run keeps in its folder: command line, configuration, JSON records.

Every training, search and evaluation run writes into its run folder (``model_dir``):

* ``command_line.txt`` — the command that started it;
* ``config.gin`` — the complete, resolved configuration, written by the library from
  its configuration value objects (:func:`config_text`): every field of every group
  the run used, so the folder alone rebuilds the model (``nasseg-eval``,
  ``nasseg-predict``) and ``--gin_file=<run>/config.gin`` repeats the run. It holds no
  path that depends on the directory the run was started in: data patterns are
  absolute, and architecture files the run depends on are copied into the folder and
  named relative to it (see :func:`run_path`);
* ``operative_config.gin`` — gin's record of what was used (written by the command
  line, where gin lives);
* JSON records (``run_info.json``, ``eval_results.json``, ...), written atomically.

Configuration value objects are frozen dataclasses with a ``GIN_NAME`` class attribute
(``Training``, ``Data``, ...): the name the command line registers them under with gin.
"""

import dataclasses
import json
import math
import os
import shlex
import sys

from nasseg_tf import fileio
from nasseg_tf.fileio import atomic_write_text

COMMAND_LINE = "command_line.txt"
CONFIG = "config.gin"
OPERATIVE_CONFIG = "operative_config.gin"
RUN_INFO = "run_info.json"


def _gin_literal(value, where):
    """``value`` written as a gin literal (Python syntax of plain data)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} cannot be written to a gin file")
    if isinstance(value, (list, tuple)):
        items = [_gin_literal(v, where) for v in value]
        if isinstance(value, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_gin_literal(k, where)}: {_gin_literal(v, where)}"
                               for k, v in value.items()) + "}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    to_config = getattr(value, "to_config", None)
    if to_config is not None:  # a genotype or DPC cell value object
        return _gin_literal(to_config(), where)
    raise ValueError(f"{where}: {type(value).__name__} cannot be written to a gin file")


def config_text(*configs):
    """Gin bindings (``Group.field = value``) for every field of every config."""
    lines = []
    for config in configs:
        name = type(config).GIN_NAME
        lines.append(f"# {name}")
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            lines.append(f"{name}.{field.name} = "
                         f"{_gin_literal(value, f'{name}.{field.name}')}")
        lines.append("")
    return "\n".join(lines)


def write_run_files(model_dir, configs, argv=None):
    """Writes ``command_line.txt`` and ``config.gin`` (from ``configs``) atomically."""
    argv = sys.argv if argv is None else argv
    atomic_write_text(os.path.join(model_dir, COMMAND_LINE), shlex.join(argv) + "\n")
    atomic_write_text(os.path.join(model_dir, CONFIG), config_text(*configs))


def write_json(path, obj):
    """Writes ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    """The JSON object at ``path``."""
    return fileio.read_json(path)


def run_path(model_dir, path):
    """``path`` as the run folder names it: relative paths are inside ``model_dir``.

    A run stores the architecture files it depends on (a searched genotype, a DPC
    cell) in its own folder and names them relative to it, so the folder can be moved
    or used from any working directory.
    """
    if path is None or os.path.isabs(path) or "://" in path:
        return path
    return os.path.join(model_dir, path)


def run_relative(model_dir, path):
    """``path`` as a run's ``config.gin`` writes it: a local path inside ``model_dir``
    becomes relative to it (the folder stays valid when moved), any other path is
    made absolute (a saved configuration never depends on the working directory).
    :func:`locate` reads it back."""
    if path is None or fileio.is_remote(path):
        return path
    path = os.path.abspath(path)
    if fileio.is_remote(model_dir):
        return path
    root = os.path.abspath(model_dir)
    if os.path.commonpath([root, path]) == root and path != root:
        return os.path.relpath(path, root)
    return path


def locate(model_dir, path, exists=fileio.exists):
    """The absolute path a run's configuration means by ``path``.

    A relative path is looked up in the run folder first (what :func:`run_relative`
    wrote), then in the working directory (a path given on the command line that
    evaluates the run); ``exists(candidate)`` decides (e.g. a glob that matches).
    """
    if path is None or os.path.isabs(path) or fileio.is_remote(path):
        return path
    inside = os.path.join(model_dir, path)
    return inside if exists(inside) else fileio.abspath(path)
