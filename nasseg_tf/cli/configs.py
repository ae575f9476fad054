"""Gin lives here: the one place that registers the package's configuration groups.

The library takes configuration *value objects* (frozen dataclasses with a
``GIN_NAME``); the command-line tools build them from ``.gin`` files and bindings:

=====================  ===========================================================
gin name               value object
=====================  ===========================================================
``Model``              :class:`nasseg_tf.models.zoo.ModelConfig`
``Data``               :class:`nasseg_tf.data.inputs.DataConfig`
``Training``           :class:`nasseg_tf.train.experiment.TrainConfig`
``Evaluation``         :class:`nasseg_tf.train.experiment.EvalConfig`
``Search``             :class:`nasseg_tf.search.autodeeplab.run.SearchConfig`
``Supernet``           :class:`nasseg_tf.search.autodeeplab.run.SupernetConfig`
``DPCSearch``          :class:`nasseg_tf.search.dpc.run.DPCSearchConfig`
``Proxy``              :class:`nasseg_tf.search.dpc.proxy.ProxyConfig`
``ProxyBackbone``      :class:`nasseg_tf.search.dpc.cache.ProxyBackboneConfig`
``SyntheticObjective`` :class:`nasseg_tf.search.dpc.objectives.SyntheticObjectiveConfig`
``DPCCost``            :class:`nasseg_tf.search.dpc.costs.CellCostConfig`
=====================  ===========================================================

Recipes ship inside the package (``nasseg_tf/gin/``; ``gin/`` in a source checkout is a
link to it) and are named relative to that folder: ``train/xception71_dpc_cityscapes.gin``.
A gin file is found by its path first, then by that name (``gin/...`` works too); the
``include`` lines resolve the same way, beside the including file first.
:func:`resolve_gin_file` and :func:`list_recipes` say what exists.

Usage::

    configs.parse(["demo/train_demo.gin"], ["Training.steps = 10"])
    experiment.train(model_dir, **configs.bound("model", "data", "training",
                                                "evaluation"))
"""

import dataclasses
import glob
import os
import re

import gin

from nasseg_tf import fileio, runfiles
from nasseg_tf.fileio import atomic_write_text
from nasseg_tf.data.inputs import DataConfig
from nasseg_tf.models.zoo import ModelConfig, get_spec
from nasseg_tf.search.autodeeplab.run import SearchConfig, SupernetConfig
from nasseg_tf.search.dpc.cache import ProxyBackboneConfig
from nasseg_tf.search.dpc.costs import CellCostConfig
from nasseg_tf.search.dpc.objectives import SyntheticObjectiveConfig
from nasseg_tf.search.dpc.proxy import ProxyConfig
from nasseg_tf.search.dpc.run import DPCSearchConfig
from nasseg_tf.train.experiment import EvalConfig, TrainConfig

#: The keyword name each library function takes a group under, and its class.
GROUPS = {
    "model": ModelConfig, "data": DataConfig, "training": TrainConfig,
    "evaluation": EvalConfig, "search": SearchConfig, "supernet": SupernetConfig,
    "dpc_search": DPCSearchConfig, "proxy": ProxyConfig, "backbone": ProxyBackboneConfig,
    "synthetic": SyntheticObjectiveConfig, "cost": CellCostConfig,
}

_CONFIGURABLE = {key: gin.external_configurable(cls, cls.GIN_NAME, module="nasseg_tf")
                 for key, cls in GROUPS.items()}


#: The recipes shipped with the package.
RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "gin")

_INCLUDE = re.compile(r"""^\s*include\s+(['"])(?P<name>[^'"]+)\1\s*(#.*)?$""")


def list_recipes():
    """The names of the shipped recipes, e.g. ``train/xception71_dpc_cityscapes.gin``."""
    paths = glob.glob(os.path.join(RECIPES_DIR, "**", "*.gin"), recursive=True)
    return sorted(os.path.relpath(p, RECIPES_DIR).replace(os.sep, "/") for p in paths)


def _recipe_candidates(name):
    """Where the shipped recipe ``name`` (or ``gin/<name>``) would be."""
    parts = os.path.normpath(name).split(os.sep)
    out = [os.path.join(RECIPES_DIR, *parts)]
    if len(parts) > 1 and parts[0] == "gin":  # the name in a source checkout
        out.append(os.path.join(RECIPES_DIR, *parts[1:]))
    return out


def _first_file(candidates, name):
    for path in candidates:
        if os.path.isfile(path):
            return path
    looked = ", ".join(dict.fromkeys(os.path.abspath(p) for p in candidates))
    raise FileNotFoundError(f"gin file not found: {name} (looked in: {looked})")


def resolve_gin_file(name, including=None):
    """The path of gin file ``name``: a path (absolute, or relative to the working
    directory; for an ``include``, relative to the ``including`` file's folder first)
    or the name of a shipped recipe (see :func:`list_recipes`).

    Raises:
      FileNotFoundError: one line naming every place it looked.
    """
    if fileio.is_remote(name):  # e.g. gs://bucket/run/config.gin
        if not fileio.exists(name):
            raise FileNotFoundError(f"gin file not found: {name}")
        return name
    if os.path.isabs(name):
        return _first_file([name], name)
    beside = ([os.path.join(os.path.dirname(os.path.abspath(including)), name)]
              if including else [])
    return _first_file(beside + [name] + _recipe_candidates(name), name)


class _FileError(Exception):
    """A failure inside an included file: ``where`` names it."""

    def __init__(self, where, error):
        super().__init__(where)
        self.where, self.error = where, error


def _parse_file(path, chain=()):
    """Parses one gin file. Its ``include`` lines are resolved here
    (:func:`resolve_gin_file`) and parsed in place; the text between them goes to gin
    with its line numbers kept."""
    if fileio.abspath(path) in chain:
        raise ValueError(f"include cycle: {' -> '.join(chain + (fileio.abspath(path),))}")
    chain = chain + (fileio.abspath(path),)
    lines = fileio.read_text(path).splitlines()
    start = 0
    for number, line in enumerate(lines + [None]):
        match = _INCLUDE.match(line) if line is not None else None
        if line is not None and not match:
            continue
        text = "\n".join(lines[start:number])
        if text.strip():
            gin.parse_config("\n" * start + text)
        if match:
            included = resolve_gin_file(match["name"], including=path)
            try:
                _parse_file(included, chain)
            except _FileError:
                raise
            except Exception as e:  # pylint: disable=broad-except  (any parse failure)
                raise _FileError(f"gin file {included} (included by {path})", e) from None
        start = number + 1


def parse(gin_files=(), gin_bindings=(), finalize=True):
    """Parses gin files and bindings; errors name the bad file or binding.

    ``gin_files`` are paths or names of shipped recipes (:func:`resolve_gin_file`).
    Each file and each binding is parsed on its own, so that any parse failure (gin
    raises ``ValueError``, ``KeyError``, ``SyntaxError``, ``tokenize.TokenError``, ...)
    becomes one ``ValueError`` naming the file or binding it came from, on one line.
    """
    gin.clear_config()
    paths = [resolve_gin_file(name) for name in gin_files]
    sources = [(_parse_file, path, f"gin file {name}")
               for path, name in zip(paths, gin_files)]
    sources += [(gin.parse_config, binding, f"gin binding {binding!r}")
                for binding in gin_bindings]
    for parse_one, source, where in sources:
        try:
            parse_one(source)
        except Exception as e:  # pylint: disable=broad-except  (any parse failure)
            gin.clear_config()
            if isinstance(e, _FileError):
                where, e = e.where, e.error
            detail = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
            raise ValueError(f"bad gin configuration in {where}: "
                             f"{type(e).__name__}: {detail}") from None
    if finalize:
        gin.finalize()


def get(group):
    """The value object of ``group`` (a key of :data:`GROUPS`) with the parsed bindings."""
    cls = GROUPS[group]
    try:
        configured = _CONFIGURABLE[group]()
    except TypeError as e:  # a bound value of the wrong kind
        raise ValueError(f"bad gin configuration of {cls.GIN_NAME}: {e}") from None
    return cls(**{f.name: getattr(configured, f.name) for f in dataclasses.fields(cls)})


def bound(*groups):
    """``{group: value object}`` for :func:`get` of each group, as keyword arguments."""
    return {group: get(group) for group in groups}


def check(groups):
    """Checks value objects before a tool writes anything: each one's own ``check()``
    where it has one (``Data``: the dataset resolves, training data is named), and that
    ``Model`` names a zoo model whose genotype / DPC cell files load.

    Raises:
      ValueError, OSError: naming the setting that is wrong.
    """
    for value in groups.values():
        if callable(getattr(value, "check", None)):
            value.check()
    model = groups.get("model")
    if model is not None:
        if not model.name:
            raise ValueError("Model.name is not set (a zoo model name, e.g. "
                             "'autodeeplab_s'; `nasseg-zoo list` lists them); name a "
                             "recipe with --gin_file (e.g. train/autodeeplab_s_cityscapes"
                             ".gin) or bind it with --gin_bindings")
        get_spec(model.name)  # an unknown name lists the known ones
        model.architecture()  # the genotype / DPC cell, if any, loads


def checked(*groups):
    """:func:`bound`, then :func:`check`: the value objects a run may start with."""
    values = bound(*groups)
    check(values)
    return values


def load_run(model_dir, gin_files=(), gin_bindings=()):
    """Parses a run folder's saved ``config.gin``, then ``gin_files`` and
    ``gin_bindings`` on top (e.g. other evaluation settings)."""
    config = os.path.join(model_dir, runfiles.CONFIG)
    if not fileio.exists(config):
        raise FileNotFoundError(f"{config} not found: is {model_dir} a training run?")
    parse([config, *gin_files], gin_bindings)


def write_operative_config(model_dir):
    """Saves gin's record of the bindings the run used (``operative_config.gin``)."""
    atomic_write_text(os.path.join(model_dir, runfiles.OPERATIVE_CONFIG),
                      gin.operative_config_str())
