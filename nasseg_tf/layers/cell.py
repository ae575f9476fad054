"""The derived Auto-DeepLab cell, built from a :class:`CellGenotype` (SPEC §2.5).

Hidden states: 0 = H^{l-1} after ReLU → 1×1 conv → BN to ``filters`` channels;
1 = H^{l-2}, resized to H^{l-1}'s size when the backbone says the resolutions differ,
and ReLU → 1×1 conv → BN only when its channels differ from ``filters`` (official
release). Block i adds its two edges' op outputs; ops reading a cell input (state 0
or 1) carry the cell's stride, ops reading a block run at stride 1. The output is the
concat of all blocks: ``num_blocks · filters`` channels.

Scheduled drop path (Zoph et al. 2018, NASNet; used by Liu et al. 2019 for retraining):
in training, each edge's op output is zeroed for a whole example with probability
``1 − keep`` and otherwise scaled by ``1/keep``, where ``keep`` falls linearly with the
cell's depth and with training progress:
``keep_l = 1 − layer_ratio·(1 − drop_path_keep_prob)`` (``layer_ratio = (l + 1)/L``)
and ``keep = 1 − progress·(1 − keep_l)``. The progress (0 → 1) is the cell's scalar
non-trainable variable ``training_progress``, which the training task sets to
``step / total_steps`` before every step (:data:`TRAINING_PROGRESS`). Our choices: the
paper does not state the keep probability (default 1.0 = off); ``skip_connect`` edges are
never dropped (an identity path always survives) and ``none`` has nothing to drop.

Resizing H^{l-2}: bilinear with ``align_corners`` (the official ``nas_cell.py`` resizes
with aligned corners; False, half-pixel centres, is what configs saved before the option
mean). The ops' own resizing (``atrous`` with stride 2) is the op's
(:mod:`nasseg_tf.layers.ops`).
"""

import keras
from keras import ops

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM, ConvBN
from nasseg_tf.layers.ops import build_op
from nasseg_tf.search_space.autodeeplab import OPS_BY_NAME
from nasseg_tf.layers.resize import resize_bilinear, spatial_size
from nasseg_tf.search_space.genotypes import CellGenotype

#: Name of the scalar variable in which layers receive the fraction of training done.
TRAINING_PROGRESS = "training_progress"
_NOT_DROPPED = ("skip_connect", "none")


@keras.saving.register_keras_serializable(package="nasseg_tf")
class DerivedCell(keras.layers.Layer):
    """A fixed cell of the derived Auto-DeepLab network.

    Args:
      cell: a :class:`CellGenotype` or its config dict.
      filters: channels per block (F × filter scaling).
      stride: 1, or 2 for a down-step cell.
      resample_prev_prev: resize H^{l-2} to the spatial size of H^{l-1}.
      bn_momentum, bn_epsilon: batch-norm settings of every conv in the cell.
      drop_path_keep_prob: scheduled drop path's final keep probability for the last
        cell (1.0: no drop path; see the module docstring).
      layer_ratio: ``(l + 1) / L`` of this cell in the network.
      seed: seed of the drop-path masks.
      align_corners: resizing convention of H^{l-2} (see the module docstring).

    Call: ``cell([h_prev, h_prev_prev], training)``.
    """

    def __init__(self, cell, filters, stride=1, resample_prev_prev=False,
                 bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, drop_path_keep_prob=1.0,
                 layer_ratio=1.0, seed=None, align_corners=False, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)
        self.drop_path_keep_prob = float(drop_path_keep_prob)
        self.layer_ratio = float(layer_ratio)
        if not 0.0 < self.drop_path_keep_prob <= 1.0:
            raise ValueError(f"drop_path_keep_prob must be in (0, 1], got "
                             f"{drop_path_keep_prob}")
        if not 0.0 <= self.layer_ratio <= 1.0:
            raise ValueError(f"layer_ratio must be in [0, 1], got {layer_ratio}")
        self.seed = seed
        self.seed_generator = (keras.random.SeedGenerator(seed)
                               if self.drop_path_keep_prob < 1.0 else None)
        if isinstance(cell, dict):
            cell = CellGenotype.from_config(cell)
        self.cell = cell.validate()
        self.filters = int(filters)
        self.stride = int(stride)
        self.resample_prev_prev = bool(resample_prev_prev)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        self.preprocess_prev = ConvBN(self.filters, 1, pre_activation=True,
                                      post_activation=False, name="prev_1x1", **bn)
        self.preprocess_prev_prev = None
        self.edges = []
        for i, block in enumerate(self.cell.blocks):
            for side, edge in zip(("left", "right"), block):
                stride = self.stride if edge.input < 2 else 1
                resize = ({"align_corners": self.align_corners}
                          if OPS_BY_NAME[edge.op].kind == "atrous" else {})
                self.edges.append(build_op(edge.op, self.filters, stride,
                                           name=f"block{i}_{side}", **bn, **resize))

    def build(self, input_shape):
        self.training_progress = None
        if self.drop_path_keep_prob < 1.0:
            self.training_progress = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name=TRAINING_PROGRESS,
                aggregation="only_first_replica")
        prev_shape, prev_prev_shape = (tuple(s) for s in input_shape)
        self.preprocess_prev.build(prev_shape)
        state_shapes = [self.preprocess_prev.compute_output_shape(prev_shape)]
        if prev_prev_shape[-1] != self.filters:
            self.preprocess_prev_prev = ConvBN(
                self.filters, 1, pre_activation=True, post_activation=False,
                name="prev_prev_1x1", bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon)
            self.preprocess_prev_prev.build(prev_prev_shape)
        state_shapes.append(state_shapes[0])
        edges = iter(self.edges)
        for block in self.cell.blocks:
            for edge in block:
                op = next(edges)
                op.build(state_shapes[edge.input][:3] + (
                    self.filters if edge.input != 1 else
                    (prev_prev_shape[-1] if self.preprocess_prev_prev is None
                     else self.filters),))
            state_shapes.append(op.compute_output_shape(state_shapes[0]))

    def call(self, inputs, training=None):
        h_prev, h_prev_prev = inputs
        if self.resample_prev_prev:
            h_prev_prev = resize_bilinear(h_prev_prev, spatial_size(h_prev),
                                          self.align_corners)
        states = [self.preprocess_prev(h_prev, training=training)]
        if self.preprocess_prev_prev is not None:
            h_prev_prev = self.preprocess_prev_prev(h_prev_prev, training=training)
        states.append(h_prev_prev)
        keep = self.keep_prob() if training and self.training_progress is not None else None
        edges = iter(self.edges)
        for block in self.cell.blocks:
            out = None
            for edge in block:
                y = next(edges)(states[edge.input], training=training)
                if keep is not None and edge.op not in _NOT_DROPPED:
                    y = self._drop_path(y, keep)
                out = y if out is None else out + y
            states.append(out)
        return ops.concatenate(states[2:], axis=-1)

    def keep_prob(self):
        """The current drop-path keep probability (a scalar tensor; see the docstring)."""
        keep_l = 1.0 - self.layer_ratio * (1.0 - self.drop_path_keep_prob)
        progress = ops.clip(ops.convert_to_tensor(self.training_progress), 0.0, 1.0)
        return 1.0 - progress * (1.0 - keep_l)

    def _drop_path(self, y, keep):
        noise = keras.random.uniform((ops.shape(y)[0], 1, 1, 1), seed=self.seed_generator,
                                     dtype=y.dtype)
        keep = ops.cast(keep, y.dtype)
        return y * (ops.floor(keep + noise) / keep)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape[0]
        if self.stride > 1:
            h = None if h is None else -(-h // self.stride)
            w = None if w is None else -(-w // self.stride)
        return (n, h, w, self.filters * self.cell.num_blocks)

    def get_config(self):
        config = super().get_config()
        config.update(cell=self.cell.to_config(), filters=self.filters,
                      stride=self.stride, resample_prev_prev=self.resample_prev_prev,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      drop_path_keep_prob=self.drop_path_keep_prob,
                      layer_ratio=self.layer_ratio, seed=self.seed,
                      align_corners=self.align_corners)
        return config
