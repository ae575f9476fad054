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
=====================  ===========================================================

Usage::

    configs.parse(["gin/demo/train_demo.gin"], ["Training.steps = 10"])
    experiment.train(model_dir, **configs.bound("model", "data", "training",
                                                "evaluation"))
"""

import dataclasses
import os

import gin

from nasseg_tf import runfiles
from nasseg_tf.fileio import atomic_write_text
from nasseg_tf.data.inputs import DataConfig
from nasseg_tf.models.zoo import ModelConfig
from nasseg_tf.search.autodeeplab.run import SearchConfig, SupernetConfig
from nasseg_tf.search.dpc.cache import ProxyBackboneConfig
from nasseg_tf.search.dpc.objectives import SyntheticObjectiveConfig
from nasseg_tf.search.dpc.proxy import ProxyConfig
from nasseg_tf.search.dpc.run import DPCSearchConfig
from nasseg_tf.train.experiment import EvalConfig, TrainConfig

#: The keyword name each library function takes a group under, and its class.
GROUPS = {
    "model": ModelConfig, "data": DataConfig, "training": TrainConfig,
    "evaluation": EvalConfig, "search": SearchConfig, "supernet": SupernetConfig,
    "dpc_search": DPCSearchConfig, "proxy": ProxyConfig, "backbone": ProxyBackboneConfig,
    "synthetic": SyntheticObjectiveConfig,
}

_CONFIGURABLE = {key: gin.external_configurable(cls, cls.GIN_NAME, module="nasseg_tf")
                 for key, cls in GROUPS.items()}


def parse(gin_files=(), gin_bindings=(), finalize=True):
    """Parses gin files and bindings; errors name the bad file or binding.

    Each file and each binding is parsed on its own, so that any parse failure (gin
    raises ``ValueError``, ``KeyError``, ``SyntaxError``, ``tokenize.TokenError``, ...)
    becomes one ``ValueError`` naming the file or binding it came from. ``include``
    lines resolve relative to the including file and its parent folders.
    """
    gin.clear_config()
    for path in gin_files:
        if not os.path.exists(path):
            raise FileNotFoundError(f"gin file not found: {path}")
        folder = os.path.dirname(os.path.abspath(path))
        for _ in range(3):
            gin.add_config_file_search_path(folder)
            folder = os.path.dirname(folder)
    sources = [(gin.parse_config_file, path, f"gin file {path}") for path in gin_files]
    sources += [(gin.parse_config, binding, f"gin binding {binding!r}")
                for binding in gin_bindings]
    for parse_one, source, where in sources:
        try:
            parse_one(source)
        except Exception as e:  # pylint: disable=broad-except  (any parse failure)
            gin.clear_config()
            raise ValueError(f"bad gin configuration in {where}: "
                             f"{type(e).__name__}: {e}") from None
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


def load_run(model_dir, gin_files=(), gin_bindings=()):
    """Parses a run folder's saved ``config.gin``, then ``gin_files`` and
    ``gin_bindings`` on top (e.g. other evaluation settings)."""
    config = os.path.join(model_dir, runfiles.CONFIG)
    if not os.path.exists(config):
        raise FileNotFoundError(f"{config} not found: is {model_dir} a training run?")
    parse([config, *gin_files], gin_bindings)


def write_operative_config(model_dir):
    """Saves gin's record of the bindings the run used (``operative_config.gin``)."""
    atomic_write_text(os.path.join(model_dir, runfiles.OPERATIVE_CONFIG),
                      gin.operative_config_str())
