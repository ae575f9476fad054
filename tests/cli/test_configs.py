"""The command line's gin layer: every recipe parses into value objects; errors name
the file or binding."""

import glob
import os
import subprocess
import sys

import pytest

from layer_checks import REPO
from nasseg_tf.cli import configs
from nasseg_tf.data import get_dataset_info

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

TINY = os.path.join(REPO, "gin", "test", "tiny.gin")


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def test_bad_gin_binding_is_a_clear_error():
    with pytest.raises(ValueError, match="stepz"):
        configs.parse([TINY], ["Training.stepz = 3"])
    with pytest.raises(FileNotFoundError, match="nope.gin"):
        configs.parse(["nope.gin"])
    with pytest.raises(ValueError, match=r"gin binding 'Training.steps = \(3'"):
        configs.parse([TINY], ["Training.steps = (3"])


def test_gin_syntax_error_on_the_command_line_is_one_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("Training.steps = (3\n")
    for args in ([f"--gin_file={TINY}", "--gin_bindings=Training.steps = (3"],
                 [f"--gin_file={bad}"]):
        run = subprocess.run([sys.executable, "-m", "nasseg_tf.cli.train",
                              f"--model_dir={tmp_path / 'run'}", *args], env=_env(),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        assert "nasseg-train: error: bad gin configuration in gin " in run.stderr
    assert not (tmp_path / "run").exists()


GIN_FILES = sorted(glob.glob(os.path.join(REPO, "gin", "**", "*.gin"), recursive=True))


@pytest.mark.parametrize("path", GIN_FILES, ids=[os.path.relpath(p, REPO) for p in GIN_FILES])
def test_every_gin_file_parses_and_builds_its_model(path):
    configs.parse([path])
    if os.path.basename(path).startswith("base_"):
        return  # a fragment included by the others
    info = get_dataset_info(configs.get("data").dataset)
    name = os.path.basename(path)
    if name.startswith("dpc_") or name.endswith("_dpc_search.gin"):  # DPC searches
        groups = configs.bound("dpc_search", "proxy", "backbone")
        assert groups["dpc_search"].max_trials > 0 and groups["proxy"].steps > 0
        return
    if os.sep + "search" + os.sep in path or name.endswith("_search.gin"):
        cfg, supernet = configs.get("search"), configs.get("supernet")
        net = supernet.build(info.num_classes)  # layers, no weights yet
        assert net.num_layers >= 1 and 0 <= cfg.warmup_steps <= cfg.steps
        return
    train_cfg = configs.get("training")
    model = configs.get("model").build(info.num_classes)
    assert model.output_shape[-1] == info.num_classes
    assert train_cfg.steps > 0 and train_cfg.batch_size > 0


def test_recipes_resolve_by_name_by_checkout_name_and_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the source tree
    names = configs.list_recipes()
    assert "train/xception71_dpc_cityscapes.gin" in names and len(names) == len(GIN_FILES)
    by_name = configs.resolve_gin_file("train/xception71_dpc_cityscapes.gin")
    assert os.path.samefile(by_name, os.path.join(REPO, "gin", "train",
                                                  "xception71_dpc_cityscapes.gin"))
    assert configs.resolve_gin_file("gin/train/xception71_dpc_cityscapes.gin") == by_name
    # A file of that name in the working directory is the user's: a path wins.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "xception71_dpc_cityscapes.gin").write_text("Training.steps = 3\n")
    assert configs.resolve_gin_file("train/xception71_dpc_cityscapes.gin") == os.path.join(
        "train", "xception71_dpc_cityscapes.gin")
    configs.parse(["train/xception71_dpc_cityscapes.gin"])
    assert configs.get("training").steps == 3


def test_an_unknown_gin_name_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as raised:
        configs.parse(["train/nope.gin"])
    message = str(raised.value)
    assert "\n" not in message
    assert str(tmp_path / "train" / "nope.gin") in message
    assert os.path.join(configs.RECIPES_DIR, "train", "nope.gin") in message


def test_includes_resolve_beside_the_file_then_among_the_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "experiments"
    mine.mkdir()
    (mine / "local.gin").write_text("Training.batch_size = 3\n")
    (mine / "run.gin").write_text(
        "include 'train/xception71_dpc_cityscapes.gin'\n"  # a shipped recipe (it
        "Training.steps = 11  # overrides the recipe\n"   # includes train/base_dpc.gin)
        "include 'local.gin'\n")                        # beside run.gin
    configs.parse([str(mine / "run.gin")])
    training, model = configs.get("training"), configs.get("model")
    assert (training.steps, training.batch_size) == (11, 3)
    assert model.name == "xception71_dpc"
    assert training.learning_rate == 0.01 and training.sync_batch_norm  # base_dpc.gin


def test_bad_includes_name_the_file_and_where_it_looked(tmp_path):
    (tmp_path / "missing.gin").write_text("\ninclude 'base/none.gin'\n")
    with pytest.raises(ValueError, match=r"gin file .*missing.gin: FileNotFoundError: gin "
                                         r"file not found: base/none.gin \(looked in: "):
        configs.parse([str(tmp_path / "missing.gin")])
    (tmp_path / "inner.gin").write_text("Training.steps = 1\nTraining.stepz = 2\n")
    (tmp_path / "outer.gin").write_text("include 'inner.gin'\n")
    with pytest.raises(ValueError, match=r"gin file .*inner.gin \(included by .*outer.gin\)"
                                         r": ValueError: .*stepz.*line 2"):
        configs.parse([str(tmp_path / "outer.gin")])
    (tmp_path / "loop.gin").write_text("include 'loop.gin'\n")
    with pytest.raises(ValueError, match="include cycle"):
        configs.parse([str(tmp_path / "loop.gin")])


def test_value_objects_are_the_library_classes_with_the_bindings():
    configs.parse([TINY], ["Training.steps = 5", "Model.genotype = 'g.json'"])
    training, model = configs.get("training"), configs.get("model")
    assert type(training) is configs.GROUPS["training"] and training.steps == 5
    assert type(model) is configs.GROUPS["model"] and model.genotype == "g.json"
    with pytest.raises(ValueError, match="Training"):
        configs.parse([], ["Training.steps = 1", "Training.nonsense = 2"])
