"""``nasseg-export``'s input limit flag."""

import pytest
import os
import subprocess
import sys

import keras

from nasseg_tf.export import load_metadata

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e

TOOL = os.path.join(os.path.dirname(sys.executable), "nasseg-export")


def test_max_pixels_flag_sets_the_exports_limit(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1)])
    model.save(str(tmp_path / "tiny.keras"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([TOOL, "--keras_model=tiny.keras", "--export_dir=export",
                             "--max_pixels=1000"], cwd=str(tmp_path), capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert load_metadata(str(tmp_path / "export"))["max_pixels"] == 1000
