"""What a run reads: the data configuration and the training input function.

:class:`DataConfig` (gin ``Data``) names the dataset and its TFRecord patterns (or the
generated demo data); :func:`train_input_fn` turns it and a training recipe into the
per-replica input pipeline the training loop and the searches use.
"""

import dataclasses
import os

from nasseg_tf.data.datasets import get_dataset_info
from nasseg_tf.data.demo import ensure_demo_dataset
from nasseg_tf.data.pipeline import build_dataset


def _absolute(pattern):
    if pattern is None:
        return None
    if isinstance(pattern, (list, tuple)):
        return type(pattern)(_absolute(p) for p in pattern)
    return pattern if "://" in pattern else os.path.abspath(pattern)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data is (gin: ``Data``). ``dataset`` names the registry entry (classes,
    palette).

    For ``demo`` without patterns the demo dataset is generated into ``data_dir``
    (default: ``<model_dir>/../demo_data``) with the ``demo_*`` settings.
    """

    GIN_NAME = "Data"

    dataset: str = "demo"
    train_pattern: str = None
    eval_pattern: str = None
    data_dir: str = None
    demo_num_train: int = 200
    demo_num_val: int = 50
    demo_size: tuple = (128, 128)
    demo_seed: int = 0

    def resolve(self, model_dir):
        """``(DatasetInfo, train_pattern, eval_pattern)``; generates demo data if needed.

        Relative patterns are made absolute (against the working directory), so that a
        saved run configuration does not depend on where the run was started.
        """
        info = get_dataset_info(self.dataset)
        train, evaluation = self.train_pattern, self.eval_pattern
        if self.dataset == "demo" and not (train and evaluation):
            data_dir = self.data_dir or os.path.join(
                os.path.dirname(os.path.abspath(model_dir)), "demo_data")
            patterns = ensure_demo_dataset(
                data_dir, num_train=self.demo_num_train, num_val=self.demo_num_val,
                height=self.demo_size[0], width=self.demo_size[1], seed=self.demo_seed)
            train, evaluation = train or patterns["train"], evaluation or patterns["val"]
        if not train:
            raise ValueError(f"Data.train_pattern is not set for dataset {self.dataset!r}")
        return info, _absolute(train), _absolute(evaluation)

    def absolute(self):
        """This config with its given paths made absolute (nothing generated)."""
        return dataclasses.replace(self, train_pattern=_absolute(self.train_pattern),
                                   eval_pattern=_absolute(self.eval_pattern),
                                   data_dir=_absolute(self.data_dir))

    def resolved(self, model_dir):
        """This config with the resolved (absolute) patterns filled in, for saving."""
        _, train, evaluation = self.resolve(model_dir)
        return dataclasses.replace(self, train_pattern=train, eval_pattern=evaluation,
                                   data_dir=_absolute(self.data_dir))


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
