"""What a run reads: the data configuration and the training input function.

:class:`DataConfig` (gin ``Data``) names the dataset — a registry name, or a user's
dataset description written by ``nasseg-build-data`` — and its TFRecord patterns (or
the generated demo data); :func:`train_input_fn` turns it and a training recipe into
the per-replica input pipeline the training loop and the searches use.
"""

import dataclasses
import os

from nasseg_tf import fileio, runfiles
from nasseg_tf.data.datasets import description_path, get_dataset_info, list_datasets
from nasseg_tf.data.demo import ensure_demo_dataset
from nasseg_tf.data.pipeline import build_dataset


def _map_paths(pattern, fn):
    if pattern is None:
        return None
    if isinstance(pattern, (list, tuple)):
        return type(pattern)(fn(p) for p in pattern)
    return fn(pattern)


def _absolute(pattern):
    return _map_paths(pattern, fileio.abspath)


def _absolute_dataset(dataset):
    """A registry name as it is; a description (file or folder) as its absolute file."""
    if dataset is None or dataset in list_datasets():
        return dataset
    return description_path(dataset) or fileio.abspath(dataset)


def _matches(pattern):
    return bool(fileio.glob(pattern))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data is (gin: ``Data``).

    ``dataset`` is a registry name (``cityscapes``, ``demo``, ...: classes, palette),
    or a dataset description written by ``nasseg-build-data``: its ``dataset.json`` or
    the folder holding it. With a description, ``train_pattern`` / ``eval_pattern``
    default to its ``train_split`` / ``eval_split`` shards.

    For ``demo`` without patterns the demo dataset is generated into ``data_dir``
    (default: ``<model_dir>/../demo_data``) with the ``demo_*`` settings.
    """

    GIN_NAME = "Data"

    dataset: str = "demo"
    train_pattern: str = None
    eval_pattern: str = None
    data_dir: str = None
    train_split: str = "train"
    eval_split: str = "val"
    demo_num_train: int = 200
    demo_num_val: int = 50
    demo_size: tuple = (128, 128)
    demo_seed: int = 0

    def _described(self):
        """``(DatasetInfo, train_pattern, eval_pattern)`` without generating anything:
        given patterns, else a description's splits (None where there is none)."""
        info = get_dataset_info(self.dataset)
        train, evaluation = self.train_pattern, self.eval_pattern
        if info.path:  # a description names its shards
            train = train or info.split_pattern(self.train_split)
            evaluation = evaluation or info.split_pattern(self.eval_split)
            if not train:
                raise ValueError(
                    f"Data.train_pattern is not set and the dataset description "
                    f"{info.path} has no split {self.train_split!r} (it has: "
                    f"{', '.join(s for s, _ in info.patterns) or 'none'}); set "
                    f"Data.train_split or Data.train_pattern")
        return info, train, evaluation

    def check(self):
        """Checks this config without writing anything (before a run creates its
        folder): the dataset resolves — a registry name or a readable description —
        and training data is named (a pattern, a description's split, or demo data
        to generate). Returns the ``DatasetInfo``.

        Raises:
          ValueError: naming what is wrong (a bad description names file and field).
          FileNotFoundError: a description path that does not exist.
        """
        info, train, _ = self._described()
        if not train and self.dataset != "demo":
            raise ValueError(f"Data.train_pattern is not set for dataset {self.dataset!r}")
        return info

    def resolve(self, model_dir):
        """``(DatasetInfo, train_pattern, eval_pattern)``; generates demo data if needed.

        Relative patterns are made absolute (against the working directory), so that a
        saved run configuration does not depend on where the run was started.
        """
        info, train, evaluation = self._described()
        if self.dataset == "demo" and not (train and evaluation):
            data_dir = self.data_dir or os.path.join(
                os.path.dirname(fileio.abspath(model_dir)), "demo_data")  # gs:// too
            patterns = ensure_demo_dataset(
                data_dir, num_train=self.demo_num_train, num_val=self.demo_num_val,
                height=self.demo_size[0], width=self.demo_size[1], seed=self.demo_seed)
            train, evaluation = train or patterns["train"], evaluation or patterns["val"]
        if not train:
            raise ValueError(f"Data.train_pattern is not set for dataset {self.dataset!r}")
        return info, _absolute(train), _absolute(evaluation)

    def absolute(self):
        """This config with its given paths made absolute (nothing generated)."""
        return dataclasses.replace(self, dataset=_absolute_dataset(self.dataset),
                                   train_pattern=_absolute(self.train_pattern),
                                   eval_pattern=_absolute(self.eval_pattern),
                                   data_dir=_absolute(self.data_dir))

    def resolved(self, model_dir):
        """This config as a run's ``config.gin`` saves it: the resolved patterns filled
        in, paths inside ``model_dir`` relative to it and all others absolute
        (:func:`nasseg_tf.runfiles.run_relative`); :meth:`in_run` reads them back."""
        _, train, evaluation = self.resolve(model_dir)

        def saved(path):
            return _map_paths(path, lambda p: runfiles.run_relative(model_dir, p))
        dataset = self.dataset
        if dataset not in list_datasets():
            dataset = runfiles.run_relative(model_dir, _absolute_dataset(dataset))
        return dataclasses.replace(self, dataset=dataset, train_pattern=saved(train),
                                   eval_pattern=saved(evaluation),
                                   data_dir=saved(_absolute(self.data_dir)))

    def in_run(self, model_dir):
        """This config, read from run folder ``model_dir``, with absolute paths.

        A relative path is looked up in the run folder first (:meth:`resolved` writes
        paths inside the run relative to it), then in the working directory (a path
        given on the command line); see :func:`nasseg_tf.runfiles.locate`.
        """
        def located(path, exists=_matches):
            return _map_paths(path, lambda p: runfiles.locate(model_dir, p, exists))
        dataset = self.dataset
        if dataset not in list_datasets():
            dataset = located(dataset, fileio.exists)
        return dataclasses.replace(self, dataset=dataset,
                                   train_pattern=located(self.train_pattern),
                                   eval_pattern=located(self.eval_pattern),
                                   data_dir=located(self.data_dir, fileio.exists))


def train_input_fn(info, pattern, cfg, subset=None, seed_offset=0):
    """``(input_context, start_batch) -> dataset`` of per-replica training batches.

    ``cfg`` is any config with the training-input fields (``batch_size`` global,
    ``crop_size``, ``min_scale``, ``max_scale``, ``base_scale``, ``shuffle_buffer``,
    ``seed``; ``scale_step`` optional): :class:`TrainConfig` or the search's config.
    ``subset`` selects a fixed record subset (the search's trainA / trainB halves).
    """
    def input_fn(ctx, start_batch):
        return build_dataset(
            pattern, num_classes=info.num_classes, ignore_label=info.ignore_label,
            training=True, batch_size=ctx.get_per_replica_batch_size(cfg.batch_size),
            crop_size=tuple(cfg.crop_size), min_scale=cfg.min_scale,
            max_scale=cfg.max_scale, scale_step=getattr(cfg, "scale_step", None),
            base_scale=cfg.base_scale, shuffle_buffer=cfg.shuffle_buffer,
            seed=cfg.seed + seed_offset, input_context=ctx, start_batch=start_batch,
            subset=subset)
    return input_fn
