"""Checkpoint keys: stable across processes and what else a process has built."""

from nasseg_tf.models import zoo
from nasseg_tf.train.checkpointing import variables_by_path


def _keys():
    model = zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4, aspp_filters=8,
                      decoder_filters=8, path=(0, 1, 1))
    return set(variables_by_path(model.variables))


def test_keys_do_not_depend_on_models_built_before():
    first = _keys()
    zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4, path=(0, 0, 0))
    assert _keys() == first
    assert "seed_generator_states/0" in first
    assert "cell_1/prev_1x1/conv/kernel" in first
