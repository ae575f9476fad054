"""The derived cell built from genotypes."""

import numpy as np
import pytest

from layer_checks import check_layer
from nasseg_tf.layers.cell import DerivedCell
from nasseg_tf.search_space.genotypes import CellGenotype, Edge, load_genotype

PUBLISHED = load_genotype("autodeeplab_cityscapes").cell
ALL_OPS_CELL = CellGenotype((
    (Edge("none", 0), Edge("max_pool_3x3", 1)),
    (Edge("avg_pool_3x3", 2), Edge("skip_connect", 0)),
    (Edge("sep_conv_3x3", 1), Edge("sep_conv_5x5", 3)),
    (Edge("atrous_conv_3x3", 4), Edge("atrous_conv_5x5", 0)),
    (Edge("sep_conv_3x3", 5), Edge("skip_connect", 1)),
))


@pytest.mark.parametrize("cell", [PUBLISHED, ALL_OPS_CELL], ids=["published", "all_ops"])
@pytest.mark.parametrize("stride", [1, 2])
def test_derived_cell_passes_layer_checks(cell, stride):
    out_hw = (-(-9 // stride), -(-10 // stride))
    check_layer(lambda: DerivedCell(cell, 4, stride=stride),
                [(2, 9, 10, 12), (2, 9, 10, 20)], (2, *out_hw, 20))


def test_prev_prev_is_resized_to_prev_and_projected():
    cell = DerivedCell(PUBLISHED, 4, resample_prev_prev=True)
    y = cell([np.zeros((1, 8, 8, 12), "float32"), np.zeros((1, 16, 16, 40), "float32")])
    assert tuple(y.shape) == (1, 8, 8, 20)
    assert cell.preprocess_prev_prev is not None


@pytest.mark.parametrize("align_corners", [False, True])
def test_prev_prev_is_resized_in_the_cells_convention(align_corners):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    # H^{l-2} with matching channels (no projection): a skip edge passes it on as is.
    genotype = CellGenotype.from_config({"blocks": [[["skip_connect", 1], ["none", 0]]]})
    cell = DerivedCell(genotype, 4, resample_prev_prev=True, align_corners=align_corners)
    prev_prev = np.random.default_rng(0).normal(size=(1, 9, 7, 4)).astype("float32")
    y = np.asarray(cell([np.zeros((1, 5, 4, 12), "float32"), prev_prev], training=False))
    expected = (tf.compat.v1.image.resize_bilinear(prev_prev, (5, 4), align_corners=True)
                if align_corners else tf.image.resize(prev_prev, (5, 4)))
    np.testing.assert_allclose(y, expected.numpy(), rtol=0, atol=1e-5)
    config = cell.get_config()
    assert config["align_corners"] is align_corners
    del config["align_corners"]  # saved before the option existed: half-pixel centres
    assert DerivedCell.from_config(config).align_corners is False


def test_prev_prev_with_matching_channels_is_not_projected():
    cell = DerivedCell(PUBLISHED, 4)
    cell([np.zeros((1, 8, 8, 12), "float32"), np.zeros((1, 8, 8, 4), "float32")])
    assert cell.preprocess_prev_prev is None


def test_cell_config_accepts_a_dict_genotype():
    cell = DerivedCell(PUBLISHED.to_config(), 4)
    assert cell.cell == PUBLISHED


def _drop_path_cell(keep, layer_ratio=1.0):
    from nasseg_tf.search_space.genotypes import CellGenotype  # pylint: disable=import-outside-toplevel
    genotype = CellGenotype.from_config({"blocks": [[["sep_conv_3x3", 0],
                                                     ["skip_connect", 1]]]})
    return DerivedCell(genotype, 4, drop_path_keep_prob=keep, layer_ratio=layer_ratio,
                       seed=1, name="cell")


def test_scheduled_drop_path_keep_probability_follows_depth_and_progress():
    cell = _drop_path_cell(0.6, layer_ratio=0.5)
    cell.build([(None, 5, 5, 4), (None, 5, 5, 4)])
    assert cell.training_progress.name == "training_progress"
    for progress, expected in ((0.0, 1.0), (0.5, 0.9), (1.0, 0.8), (2.0, 0.8)):
        cell.training_progress.assign(progress)
        assert float(cell.keep_prob()) == pytest.approx(expected)
    assert not _drop_path_cell(1.0).weights or all(
        "training_progress" not in w.name for w in _drop_path_cell(1.0).weights)
    with pytest.raises(ValueError, match="drop_path_keep_prob"):
        _drop_path_cell(0.0)


def test_drop_path_zeroes_whole_examples_in_training_only():
    cell = _drop_path_cell(0.5)
    x = [np.random.default_rng(0).normal(size=(64, 5, 5, 4)).astype("float32")] * 2
    cell(x)
    plain = _drop_path_cell(1.0)
    plain(x)
    by_path = {w.path: w for w in cell.weights}
    for w in plain.weights:
        w.assign(by_path[w.path])
    cell.training_progress.assign(1.0)  # keep = 0.5 on the sep_conv edge
    np.testing.assert_allclose(np.asarray(cell(x, training=False)),
                               np.asarray(plain(x, training=False)), atol=1e-5)
    # The skip edge (H^{l-2} = x[1]) is never dropped: out - x[1] is the sep edge alone.
    sep = np.asarray(cell(x, training=True)) - x[1]
    reference = np.asarray(plain(x, training=True)) - x[1]
    dropped = np.all(sep == 0, axis=(1, 2, 3))
    assert 10 < dropped.sum() < 54  # about half of 64 examples
    np.testing.assert_allclose(sep[~dropped], 2 * reference[~dropped], rtol=1e-4,
                               atol=1e-4)


def test_drop_path_cell_passes_layer_checks_and_progress_is_set_per_replica():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from layer_checks import mirrored_strategy  # pylint: disable=import-outside-toplevel

    check_layer(lambda: _drop_path_cell(0.7), [(2, 5, 5, 4), (2, 5, 5, 4)], (2, 5, 5, 4))
    strategy = mirrored_strategy()
    with strategy.scope():
        cell = _drop_path_cell(0.7)
        cell.build([(None, 5, 5, 4), (None, 5, 5, 4)])
    strategy.run(tf.function(lambda: cell.training_progress.assign(0.25)))
    assert [float(v) for v in strategy.experimental_local_results(
        cell.training_progress.value)] == [0.25, 0.25]
