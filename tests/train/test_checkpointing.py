"""Checkpoint keys (stable across processes and what else a process has built) and the
architecture fingerprint."""

import numpy as np
import pytest
import tensorflow as tf

from nasseg_tf.models import zoo
from nasseg_tf.train.checkpointing import (ArchitectureMismatchError,
                                           architecture_differences, architecture_variable,
                                           check_architecture, variables_by_path)


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


def test_architecture_differences_name_each_changed_field():
    saved = {"model": "a", "genotype": {"cell": {"blocks": [[["max_pool_3x3", 0]]]},
                                        "path": [0, 1]}}
    current = {"model": "a", "genotype": {"cell": {"blocks": [[["skip_connect", 0]]]},
                                          "path": [0, 1, 2]}}
    assert architecture_differences(saved, saved) == []
    assert architecture_differences(saved, current) == [
        "genotype.cell.blocks[0][0][0]: 'max_pool_3x3' (checkpoint) vs 'skip_connect' "
        "(this model)",
        "genotype.path.length: 2 (checkpoint) vs 3 (this model)",
        "genotype.path[2]: '(absent)' (checkpoint) vs 2 (this model)"]


def test_checkpoints_without_an_architecture_record_still_restore(tmp_path):
    old = tf.train.Checkpoint(w=tf.Variable(1.0)).save(str(tmp_path / "old" / "ckpt"))
    check_architecture(old, {"model": "anything"})  # written before fingerprints: passes
    new = tf.train.Checkpoint(w=tf.Variable(1.0), architecture=architecture_variable(
        {"model": "a"})).save(str(tmp_path / "new" / "ckpt"))
    check_architecture(new, {"model": "a"})
    with pytest.raises(ArchitectureMismatchError, match="model: 'a' .* vs 'b'"):
        check_architecture(new, {"model": "b"})


def test_a_checkpoint_from_before_numerics_restores_with_the_legacy_numerics(tmp_path):
    import keras  # pylint: disable=import-outside-toplevel

    from nasseg_tf.models.zoo import ModelConfig  # pylint: disable=import-outside-toplevel
    from nasseg_tf.data.inputs import DataConfig  # pylint: disable=import-outside-toplevel
    from nasseg_tf.train import experiment  # pylint: disable=import-outside-toplevel

    overrides = {"depth_multiplier": 0.25, "context_filters": 8}
    keras.utils.set_random_seed(0)
    old = zoo.build("mobilenetv2_dpc", num_classes=8, numerics="legacy", **overrides)
    tf.train.Checkpoint(model=variables_by_path(old.variables),  # no architecture record
                        step=tf.Variable(7, dtype=tf.int64)).save(
        str(tmp_path / "checkpoints" / "ckpt"))
    config = ModelConfig("mobilenetv2_dpc", overrides)
    assert config.architecture()["numerics"] == "official"
    restored, _, step = experiment.restore_model(str(tmp_path), config, DataConfig("demo"))
    images = np.random.default_rng(0).uniform(0, 255, (1, 50, 66, 3)).astype("float32")
    assert step == 7
    expected = np.asarray(old(images, training=False))
    scale = np.abs(expected).max()  # a random init's logits are tiny: compare relatively
    np.testing.assert_allclose(np.asarray(restored(images, training=False)) / scale,
                               expected / scale, atol=1e-5)
    official = zoo.build("mobilenetv2_dpc", num_classes=8, **overrides)
    official.set_weights(old.get_weights())
    assert np.abs(np.asarray(official(images, training=False)) - expected).max() > (
        1e-2 * scale)  # the official numerics would have computed something else
