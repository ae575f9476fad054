"""Test set-up: quiet TF logs and two logical CPU devices (for MirroredStrategy tests)."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # already initialised by another conftest import
    pass


@pytest.fixture(autouse=True, scope="session")
def _record_check_cache_in_tmp(tmp_path_factory):
    """``build_dataset``'s record-check cache goes to a temporary folder, not ~/.cache
    (also for tools the tests run as subprocesses, which inherit the environment)."""
    previous = os.environ.get("NASSEG_CACHE_DIR")
    os.environ["NASSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("nasseg_cache"))
    yield
    if previous is None:
        os.environ.pop("NASSEG_CACHE_DIR", None)
    else:
        os.environ["NASSEG_CACHE_DIR"] = previous
