"""Genotype value objects: JSON round trip, validation errors, official converter."""

import json

import pytest

from nasseg_tf.search_space import genotypes as G

OFFICIAL = dict(
    operations=["atrous_5x5", "separable_3x3_2", "separable_3x3_2", "atrous_3x3",
                "separable_3x3_2", "separable_3x3_2", "separable_5x5_2",
                "separable_5x5_2", "separable_5x5_2", "atrous_5x5"],
    hiddenstate_indices=[1, 0, 1, 0, 3, 1, 4, 2, 3, 5],
    backbone=[0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1],
)


def _config():
    return json.loads(G.load_genotype("autodeeplab_cityscapes").to_json())


def test_published_genotype_loads_by_name_and_equals_the_official_lists():
    genotype = G.load_genotype("autodeeplab_cityscapes")
    assert genotype == G.from_official(**OFFICIAL, name="autodeeplab_cityscapes")
    assert genotype.downsample_rates == (4, 4, 4, 8, 16, 8, 16, 16, 32, 32, 16, 8)
    assert genotype.output_stride == 8
    assert "autodeeplab_cityscapes" in G.published_genotypes()


def test_official_round_trip():
    genotype = G.from_official(**OFFICIAL)
    official = G.to_official(genotype)
    assert official["operations"] == OFFICIAL["operations"]
    assert official["hiddenstate_indices"] == OFFICIAL["hiddenstate_indices"]
    assert official["backbone"] == OFFICIAL["backbone"]
    assert official["used_hiddenstates"] == [1, 1, 0, 0, 0, 0, 0]


def test_json_round_trip_and_file_save(tmp_path):
    genotype = G.load_genotype("autodeeplab_cityscapes")
    assert G.NetworkGenotype.from_json(genotype.to_json()) == genotype
    path = tmp_path / "genotype.json"
    genotype.save(str(path))
    assert G.load_genotype(str(path)) == genotype
    assert json.loads(path.read_text()) == genotype.to_config()


def test_genotypes_are_frozen_and_hashable():
    genotype = G.load_genotype("autodeeplab_cityscapes")
    with pytest.raises(Exception):
        genotype.path = (0,)
    assert hash(genotype) == hash(G.load_genotype("autodeeplab_cityscapes"))


@pytest.mark.parametrize("mutate,field", [
    (lambda c: c["cell"]["blocks"][2].__setitem__(0, ["conv_7x7", 0]),
     r"cell\.blocks\[2\]\[0\]\.op: unknown op 'conv_7x7'"),
    (lambda c: c["cell"]["blocks"][1].__setitem__(1, ["sep_conv_3x3", 3]),
     r"cell\.blocks\[1\]\[1\]\.input: 3 out of range"),
    (lambda c: c["cell"]["blocks"][0].__setitem__(1, ["sep_conv_3x3", -1]),
     r"cell\.blocks\[0\]\[1\]\.input: -1 out of range"),
    (lambda c: c.__setitem__("path", [0, 0, 2, 2]), r"path\[2\]: jump from level 0 to 2"),
    (lambda c: c.__setitem__("path", [2, 2, 2]), r"path\[0\]: the first layer must be at level 0 or 1"),
    (lambda c: c.__setitem__("path", [0, 1, 4]), r"path\[2\]: level 4 out of range"),
    (lambda c: c["cell"]["blocks"].__setitem__(0, [["sep_conv_3x3", 0]]),
     r"cell\.blocks\[0\]: expected two edges"),
    (lambda c: c.pop("path"), r"missing required key 'path'"),
    (lambda c: c.__setitem__("paths", [0]), r"unknown keys \['paths'\]"),
])
def test_bad_genotype_json_names_the_field(mutate, field):
    config = _config()
    mutate(config)
    with pytest.raises(G.GenotypeError, match=field):
        G.NetworkGenotype.from_json(json.dumps(config))


def test_invalid_json_text_is_a_genotype_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(G.GenotypeError, match=f"{path}.*invalid JSON"):
        G.load_genotype(str(path))


def test_unknown_genotype_name_lists_published_ones():
    with pytest.raises(G.GenotypeError, match="autodeeplab_cityscapes"):
        G.load_genotype("nasnet_large")


def test_official_converter_rejects_unknown_ops():
    with pytest.raises(G.GenotypeError, match=r"operations\[0\]: unknown op 'conv'"):
        G.from_official(["conv", "atrous_3x3"], [0, 1], [0])


def test_genotype_json_carries_a_version_and_old_files_still_load(tmp_path):
    genotype = G.load_genotype("autodeeplab_cityscapes")
    path = str(tmp_path / "g.json")
    genotype.save(path)
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["version"] == G.GENOTYPE_VERSION == 1
    old = {k: v for k, v in saved.items() if k != "version"}  # written before versions
    assert G.NetworkGenotype.from_config(old) == genotype
    with pytest.raises(G.GenotypeError, match=r"genotype.version: 2 .*newer"):
        G.NetworkGenotype.from_config(dict(saved, version=2))
