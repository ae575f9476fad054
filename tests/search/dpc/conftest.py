"""DPC search tests: a single process (no KerasTuner chief/worker variables); tiny demo
data and a feature cache shared by a module's tests."""

import pytest

from nasseg_tf.data import ensure_demo_dataset
from proxy_helpers import make_cache


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 36x28 images with 32x32 crops: train crops cut rows and pad columns; val crops
    # center-crop rows and center-pad columns.
    return ensure_demo_dataset(str(tmp_path_factory.mktemp("demo")), num_train=16,
                               num_val=8, height=36, width=28, num_shards=2)


@pytest.fixture(scope="module")
def cache(data, tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("cache"), data).build_or_load()
