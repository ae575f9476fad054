"""Runs as the command line does them, in-process: parse gin with
:func:`nasseg_tf.cli.configs.parse`, then call these with the parsed configuration."""

from nasseg_tf.cli import configs
from nasseg_tf.search.autodeeplab import run as autodeeplab_run
from nasseg_tf.train import experiment


def train(model_dir, **kwargs):
    """``nasseg-train``'s body without the printing: returns ``experiment.train``'s dict."""
    kwargs.setdefault("progress", False)
    out = experiment.train(model_dir, **configs.bound("model", "data", "training",
                                                      "evaluation"), **kwargs)
    configs.write_operative_config(model_dir)
    return out


def search(model_dir, **kwargs):
    """``nasseg-search-autodeeplab``'s body without the printing."""
    kwargs.setdefault("progress", False)
    out = autodeeplab_run.run_search(model_dir, **configs.bound("search", "supernet",
                                                                "data"), **kwargs)
    configs.write_operative_config(model_dir)
    return out


def restore(model_dir):
    """``(model, DatasetInfo, step)`` of a run folder, as ``nasseg-eval`` restores it."""
    configs.load_run(model_dir)
    return experiment.restore_model(model_dir, **configs.bound("model", "data"))
