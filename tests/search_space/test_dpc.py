"""The DPC cell value objects, the official JSON format and the search space."""

import itertools
import json
from importlib import resources

import keras_tuner as kt
import numpy as np
import pytest

from nasseg_tf.search_space.dpc import (DPCCell, DPCSearchSpace, GenotypeError,
                                        load_dpc_cell, published_dpc_cells, random_cells)

TOP1 = [{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1},
        {"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0},
        {"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1},
        {"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0},
        {"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0}]


def test_published_top1_cell_loads_verbatim_by_name_and_alias():
    assert "dense_prediction_cell_branch5_top1_cityscapes" in published_dpc_cells()
    text = resources.files("nasseg_tf.search_space").joinpath(
        "published", "dpc_cells", "dense_prediction_cell_branch5_top1_cityscapes.json"
    ).read_text()
    assert json.loads(text) == TOP1
    for name in ("dpc_top1_cityscapes", "dense_prediction_cell_branch5_top1_cityscapes"):
        cell = load_dpc_cell(name)
        assert cell.to_config() == TOP1
        assert cell.branches[1].rate == (18, 15)


def test_json_roundtrip_and_save(tmp_path):
    cell = DPCCell.from_config(TOP1 + [])
    assert json.loads(cell.to_json()) == TOP1
    path = tmp_path / "cell.json"
    cell.save(str(path))
    assert load_dpc_cell(str(path)) == cell
    pool = DPCCell.from_config([{"op": "pyramid_pooling", "grid_size": [2, 4],
                                 "kernel": 3, "rate": [1, 1], "input": -1}])
    assert pool.to_config() == [{"op": "pyramid_pooling", "grid_size": [2, 4], "input": -1}]
    one = DPCCell.from_config([{"op": "conv", "kernel": 1, "rate": [6, 6], "input": -1}])
    assert one.branches[0].rate == (1, 1)  # a 1x1 conv has no rate


@pytest.mark.parametrize("branch, message", [
    ({"op": "deform_conv", "kernel": 3, "rate": [1, 1], "input": -1}, "unknown op"),
    ({"op": "conv", "kernel": 5, "rate": [1, 1], "input": -1}, "kernel"),
    ({"op": "conv", "kernel": 3, "rate": [0, 1], "input": -1}, "rate"),
    ({"op": "conv", "kernel": 3, "rate": [3], "input": -1}, "rate"),
    ({"op": "conv", "kernel": 3, "rate": ["6", 3], "input": -1}, "rate"),
    ({"op": "pyramid_pooling", "grid_size": [2, -1], "input": -1}, "grid_size"),
    ({"op": "pyramid_pooling", "input": -1}, "grid_size"),
    ({"op": "conv", "kernel": 3, "rate": [1, 1]}, "input"),
    ({"op": "conv", "kernel": 3, "rate": [1, 1], "input": -1, "stride": 2}, "unknown keys"),
])
def test_bad_branches_give_clear_errors(branch, message):
    with pytest.raises(GenotypeError, match=message):
        DPCCell.from_config([branch])


def test_input_referencing_a_later_branch_is_rejected():
    bad = [dict(TOP1[0]), dict(TOP1[1], input=1)]
    with pytest.raises(GenotypeError, match=r"cell\[1\]\.input: 1 is not allowed"):
        DPCCell.from_config(bad)
    with pytest.raises(GenotypeError, match="input"):
        DPCCell.from_config([dict(TOP1[0], input=-2)])


def test_bad_json_and_unknown_names():
    with pytest.raises(GenotypeError, match="invalid JSON"):
        DPCCell.from_json("[{")
    with pytest.raises(GenotypeError, match="published"):
        load_dpc_cell("dpc_top7")
    with pytest.raises(GenotypeError, match="list"):
        DPCCell.from_config({"op": "conv"})


def test_space_size_is_the_papers():
    space = DPCSearchSpace()
    assert space.num_ops == 81
    assert space.size() == 120 * 81 ** 5 == 418_414_128_120


def test_size_equals_enumeration_of_a_small_space():
    space = DPCSearchSpace(num_branches=3, rates=(1, 3), grids=(1, 2))
    assert space.num_ops == 1 + 4 + 4
    keys = set()
    for codes in itertools.product(
            *[itertools.product(range(space.num_ops), range(-1, i)) for i in range(3)]):
        values = {}
        for i, (op, inp) in enumerate(codes):
            values.update({f"branch{i}_op": op, f"branch{i}_input": inp})
        keys.add(space.decode(values).key())
    assert len(keys) == space.size() == 6 * 9 ** 3
    assert {cell.key() for cell in space.cells()} == keys


def test_sample_mutate_encode_decode():
    space = DPCSearchSpace()
    rng = np.random.default_rng(0)
    for _ in range(200):
        cell = space.sample(rng)
        assert space.contains(cell)
        assert space.decode(space.encode(cell)) == cell
        child = space.mutate(cell, rng)
        assert child != cell and space.contains(child)
        diff = [a != b for a, b in zip(cell.branches, child.branches)]
        assert sum(diff) == 1
    top1 = load_dpc_cell("dpc_top1_cityscapes")
    assert space.decode(space.encode(top1)) == top1


def test_samples_cover_ops_and_inputs_uniformly():
    space = DPCSearchSpace()
    rng = np.random.default_rng(1)
    cells = [space.sample(rng) for _ in range(3000)]
    inputs = np.array([c.branches[4].input for c in cells])
    counts = np.bincount(inputs + 1, minlength=5)
    assert counts.min() > 480 and counts.max() < 720  # 600 each expected
    ops = [c.branches[0].op for c in cells]
    # 16 of 81 ops are pyramid pooling.
    assert abs(ops.count("pyramid_pooling") / 3000 - 16 / 81) < 0.03


def test_keras_tuner_hyperparameters_decode_to_the_cell():
    space = DPCSearchSpace()
    hp = kt.HyperParameters()
    space.declare(hp)
    assert len(hp.space) == 10
    top1 = load_dpc_cell("dpc_top1_cityscapes")
    for name, value in space.encode(top1).items():
        hp.values[name] = value
    assert space.decode(hp) == top1
    with pytest.raises(GenotypeError, match="out of range"):
        space.decode({**space.encode(top1), "branch0_op": 81})
    with pytest.raises(GenotypeError, match="missing"):
        space.decode({"branch0_op": 0})


def test_cells_outside_the_space_are_detected():
    space = DPCSearchSpace()
    odd = DPCCell.from_config([dict(TOP1[0], rate=[2, 2])] + TOP1[1:])
    assert not space.contains(odd)
    assert not space.contains(DPCCell.from_config(TOP1[:3]))


def test_random_cells_are_distinct():
    cells = random_cells(DPCSearchSpace(num_branches=2), 50, seed=3)
    assert len({c.key() for c in cells}) == 50
