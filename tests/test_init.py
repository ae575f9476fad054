"""``import nasseg_tf``: every Keras layer registered for ``load_model``, on Keras
alone (no TensorFlow on the JAX backend). Fresh processes, outside the source tree."""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layer_checks import REPO
from nasseg_tf import zoo

pytestmark = pytest.mark.e2e

#: Registered, but not for saved models: the DPC proxy task's head lives with the
#: proxy's TensorFlow training code, which ``import nasseg_tf`` leaves out.
NOT_AT_IMPORT = {"nasseg_tf>ProxyHead"}

_LOAD = """
import json, sys
import keras, numpy as np
try:
    keras.saving.load_model(sys.argv[1])
    before = "loaded"
except Exception as e:  # what a user saw before: an opaque TypeError
    before = type(e).__name__
import nasseg_tf
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]))))
print(json.dumps({"before": before, "registered": sorted(
    k for k in keras.saving.get_custom_objects() if k.startswith("nasseg_tf>"))}))
"""


def _registered_in_source():
    """``nasseg_tf>Name`` of every class the package registers with Keras."""
    names = set()
    for root, _, files in os.walk(os.path.join(REPO, "nasseg_tf")):
        for file in files:
            if not file.endswith(".py"):
                continue
            with open(os.path.join(root, file), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                        "register_keras_serializable" in ast.unparse(d)
                        for d in node.decorator_list):
                    names.add(f"nasseg_tf>{node.name}")
    return names


def _fresh_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    return dict(env, **extra)


def test_load_model_works_after_import_nasseg_tf_alone(tmp_path):
    model = zoo.build("autodeeplab_s", num_classes=3, filter_multiplier=4,
                      aspp_filters=8, decoder_filters=8, path=(0, 0, 1))  # 3 cells
    model.save(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (1, 33, 41, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run(
        [sys.executable, "-c", _LOAD, "model.keras", "x.npy", "y.npy"], cwd=tmp_path,
        env=_fresh_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["before"] == "TypeError"  # without nasseg_tf: the failure
    expected = _registered_in_source() - NOT_AT_IMPORT
    assert len(expected) >= 15 and set(report["registered"]) == expected
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(model(x)),
                               atol=1e-5)


def test_import_nasseg_tf_on_jax_imports_no_tensorflow(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", "import sys, keras, nasseg_tf; "
         "print(keras.backend.backend(), 'tensorflow' in sys.modules, "
         "len([k for k in keras.saving.get_custom_objects() if k.startswith('nasseg_tf>')]))"],
        cwd=tmp_path, env=_fresh_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    backend, tensorflow, registered = run.stdout.split()
    assert (backend, tensorflow) == ("jax", "False") and int(registered) >= 15
