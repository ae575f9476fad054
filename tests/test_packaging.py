"""The wheel, built offline from the repository's tracked files, holds the package and
its recipes, and works without the source tree: every recipe resolves and parses (with
its includes) from the unpacked wheel, and so do the demo's and a tool's ``--help``."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from layer_checks import REPO

pytestmark = pytest.mark.e2e  # a wheel build and a TensorFlow start: ~7 s

TOOLS = {"nasseg-zoo", "nasseg-import-checkpoint", "nasseg-export", "nasseg-demo",
         "nasseg-build-data", "nasseg-train", "nasseg-eval", "nasseg-predict",
         "nasseg-search-autodeeplab", "nasseg-search-dpc"}

_FROM_WHEEL = """
import contextlib, io, json, os, runpy, sys
import gin
import nasseg_tf
from nasseg_tf.cli import configs, demo

report = {"package": nasseg_tf.__file__, "recipes_dir": configs.RECIPES_DIR,
          "recipes": configs.list_recipes(), "parsed": {}}
for name in report["recipes"]:
    configs.parse([name])  # by name, includes and all
    training = configs.get("training")
    report["parsed"][name] = {"steps": training.steps,
                              "sync_batch_norm": training.sync_batch_norm,
                              "model": configs.get("model").name}
report["demo"] = [demo.recipe(n) for n in (demo.DEMO_GIN, demo.SEARCH_GIN, demo.DPC_GIN)]
sys.argv = ["nasseg-zoo", "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module("nasseg_tf.cli.zoo_tool", run_name="__main__")
    except SystemExit as e:
        report["help_code"] = e.code
report["help"] = out.getvalue()
print(json.dumps(report))
"""


def _tracked_tree(destination):
    """A copy of the repository's tracked files as they are in the working tree."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = os.path.join(REPO, name)
        if not os.path.lexists(source):
            continue  # deleted, not yet committed
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return files


def test_wheel_ships_package_and_recipes_and_works_outside_the_source_tree(tmp_path):
    source = tmp_path / "src"
    tracked = _tracked_tree(source)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()

    modules = {n for n in tracked if n.startswith("nasseg_tf/") and n.endswith(".py")}
    data = {n for n in tracked if n.startswith("nasseg_tf/")
            and n.endswith((".gin", ".json"))}
    assert modules and modules <= names, sorted(modules - names)
    recipes = {n for n in data if n.startswith("nasseg_tf/gin/")}
    assert len(recipes) >= 20 and data <= names, sorted(data - names)
    assert any("search_space/published/genotypes/" in n for n in data)
    assert any("search_space/published/dpc_cells/" in n for n in data)
    assert not [n for n in names if n.startswith(("tests/", "tools/", "bench/", "gin/"))]
    assert not [n for n in names if "__pycache__" in n]
    assert f"{dist_info}/licenses/LICENSE" in names
    assert {line.split(" = ")[0] for line in entry_points.splitlines()
            if " = nasseg_tf." in line} == TOOLS

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict({k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
               PYTHONPATH=str(tmp_path / "site"))
    run = subprocess.run([sys.executable, "-c", _FROM_WHEEL], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    site = str(tmp_path / "site")
    assert report["package"].startswith(site) and report["recipes_dir"].startswith(site)
    assert {f"nasseg_tf/gin/{name}" for name in report["recipes"]} == recipes
    parsed = report["parsed"]
    assert parsed["train/xception71_dpc_cityscapes.gin"] == {
        "steps": 90000, "sync_batch_norm": True, "model": "xception71_dpc"}  # + base_dpc
    assert parsed["train/autodeeplab_s_cityscapes.gin"]["model"] == "autodeeplab_s"
    assert all(path.startswith(site) for path in report["demo"])
    assert report["help_code"] == 0 and "--input_size" in report["help"]
