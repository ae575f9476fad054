"""Model zoo: paper parameter counts, forward at any size, save/load, JAX parity."""

import json
import textwrap

import keras
import numpy as np
import pytest

from layer_checks import run_on_jax
from nasseg_tf import zoo
from nasseg_tf.counting import count
from nasseg_tf.internals import flatten_layers

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name,paper_params,backbone_params", [
    ("autodeeplab_s", 10.15e6, 7.03e6),
    ("autodeeplab_m", 21.62e6, 17.61e6),
    ("autodeeplab_l", 44.42e6, 39.22e6),
])
def test_params_match_paper_table_2(name, paper_params, backbone_params):
    model = zoo.build(name, num_classes=19)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert abs(params - paper_params) / paper_params < 0.005
    assert round(params / 1e6, 2) == round(paper_params / 1e6, 2)  # to the last digit
    backbone = sum(int(np.prod(v.shape)) for v in model.trainable_weights
                   if v.path.startswith(("stem", "cell")))
    assert round(backbone / 1e6, 2) == round(backbone_params / 1e6, 2)


def test_madds_at_1024x2048_within_ten_percent_of_paper():
    # Our counts: conv/fc MAdds only (see nasseg_tf.counting); README explains the gap.
    for name in ("autodeeplab_s", "autodeeplab_l"):
        spec = zoo.get_spec(name)
        report = count(zoo.build(name, num_classes=19), (1024, 2048))
        assert 0.9 < report.madds / spec.paper["madds"] < 1.0, (name, report.madds)


def test_separable_heads_give_the_smaller_counts_the_spec_predicts():
    model = zoo.build("autodeeplab_s", num_classes=19, aspp_separable=True,
                      decoder_separable=True)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert round(params / 1e6, 2) == 7.78


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'autodeeplab_xl'.*autodeeplab_s"):
        zoo.build("autodeeplab_xl")


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="unknown override.*aspp_ratez"):
        zoo.build("autodeeplab_s", aspp_ratez=(1, 2, 3))


def test_list_models_has_the_auto_deeplab_family():
    assert {"autodeeplab_s", "autodeeplab_m", "autodeeplab_l"} <= set(zoo.list_models())


def _resizing(model):
    """The ``align_corners`` of every resizing layer of a model (cells included)."""
    return {l.name: l.align_corners for l in flatten_layers(model)
            if hasattr(l, "align_corners")}


@pytest.mark.parametrize("numerics,align_corners,head_epsilon", [
    ("official", True, 1e-5), ("legacy", False, 1e-3)])
def test_autodeeplab_numerics(numerics, align_corners, head_epsilon):
    # Official DeepLab framework around nas_hnasnet: aligned corners everywhere, BN
    # epsilon 1e-3 in hnasnet (SPEC §2.5) and 1e-5 in ASPP and decoder (SPEC §7).
    model = zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4,
                      aspp_filters=8, decoder_filters=8, numerics=numerics)
    resizing = _resizing(model)
    assert {"upsample_logits", "context", "decoder", "image_pooling", "cell_10",
            "cell_11_upsample"} <= set(resizing)
    assert set(resizing.values()) == {align_corners}
    assert model.get_layer("context").bn_epsilon == head_epsilon
    assert model.get_layer("decoder").bn_epsilon == head_epsilon
    assert model.get_layer("cell_0").bn_epsilon == 1e-3
    assert model.get_layer("stem_conv0").bn_epsilon == 1e-3
    assert model.get_layer("context").output_stride == 8


def _tiny(num_classes=5):
    return zoo.build("autodeeplab_s", num_classes=num_classes, filter_multiplier=4,
                     aspp_filters=16, decoder_filters=16)


@pytest.mark.parametrize("size", [(33, 47), (65, 65), (40, 32)])
def test_forward_at_any_size_returns_logits_at_input_size(size):
    model = _tiny()
    x = np.random.default_rng(0).uniform(0, 255, size=(2, *size, 3)).astype("float32")
    assert tuple(model(x).shape) == (2, *size, 5)


def test_searched_genotype_file_builds(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps({
        "cell": {"blocks": [[["skip_connect", 0], ["max_pool_3x3", 1]],
                            [["avg_pool_3x3", 2], ["none", 0]]]},
        "path": [1, 2, 3, 3, 2, 1, 0]}))
    model = zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4,
                      genotype=str(path), low_level_cell=6)
    assert tuple(model(np.zeros((1, 37, 41, 3), "float32")).shape) == (1, 37, 41, 3)


def test_keras_save_and_load_gives_identical_outputs(tmp_path):
    model = _tiny()
    x = np.random.default_rng(1).uniform(0, 255, size=(1, 41, 37, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(restored(x, training=False)), expected,
                               atol=1e-4)


_JAX_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from nasseg_tf import zoo
    weights, inputs, out = sys.argv[1:4]
    model = zoo.build("autodeeplab_s", num_classes=5, filter_multiplier=4,
                      aspp_filters=16, decoder_filters=16)
    model.load_weights(weights)
    np.save(out, np.asarray(model(np.load(inputs), training=False)))
""")


def test_zoo_model_on_jax_backend_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    model = _tiny()
    x = np.random.default_rng(2).uniform(0, 255, size=(1, 45, 39, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    weights = str(tmp_path / "tiny.weights.h5")
    model.save_weights(weights)
    np.save(tmp_path / "x.npy", x)
    run_on_jax(_JAX_SCRIPT, weights, tmp_path / "x.npy", tmp_path / "y.npy")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4)


def test_a_run_names_its_architecture_copies_relative_to_itself_so_it_can_move(
        tmp_path, monkeypatch):
    from nasseg_tf.models.zoo import ModelConfig  # pylint: disable=import-outside-toplevel
    from nasseg_tf.search_space.genotypes import load_genotype  # pylint: disable=import-outside-toplevel

    run = tmp_path / "run"
    run.mkdir()
    saved, _ = ModelConfig("autodeeplab_s", genotype="autodeeplab_cityscapes",
                           dpc_cell=None).resolve(str(run))
    assert saved.genotype == "genotype.json"  # what config.gin writes
    expected = ModelConfig("autodeeplab_s", genotype="autodeeplab_cityscapes"
                           ).architecture()
    moved = tmp_path / "archive" / "run"
    moved.parent.mkdir()
    run.rename(moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = load_genotype("autodeeplab_cityscapes")
    type(other)(other.cell, (0, 0, 0, 1), "other").save(str(elsewhere / "genotype.json"))
    monkeypatch.chdir(elsewhere)  # holds another genotype.json: the run's copy wins
    assert saved.architecture(base_dir=str(moved)) == expected
