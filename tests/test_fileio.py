"""Atomic writes, temporary names that record their owner, and the stale-temp cleaner."""

import os
import subprocess
import sys
import time

import pytest

from nasseg_tf import fileio


@pytest.fixture(scope="module")
def dead_pid():
    """The pid of a process of this host that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _make(path, folder=False, age_s=0):
    if folder:
        os.makedirs(os.path.join(path, "variables"))
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write("partial")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_temp_path_is_a_hidden_sibling_naming_host_and_pid(tmp_path):
    target = str(tmp_path / "model.keras")
    tmp = fileio.temp_path(target, ".keras")
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith(".model.keras.tmp~")
    assert tmp.endswith(".keras")
    assert fileio.temp_owner(tmp) == (fileio._host(), os.getpid())
    assert tmp != fileio.temp_path(target, ".keras")  # random part
    assert fileio.temp_owner(target) is None


def test_cleaner_removes_a_dead_processs_temp_files_and_folders(tmp_path, dead_pid):
    stale_file = _make(fileio.temp_path(str(tmp_path / "a.json"), pid=dead_pid))
    stale_folder = _make(fileio.temp_path(str(tmp_path / "export"), pid=dead_pid),
                         folder=True)
    kept = _make(str(tmp_path / "a.json"))
    assert fileio.clean_stale_temps(str(tmp_path)) == sorted([stale_file, stale_folder])
    assert os.listdir(tmp_path) == [os.path.basename(kept)]


def test_cleaner_keeps_a_live_processs_temp_whatever_the_age_limit(tmp_path):
    live = _make(fileio.temp_path(str(tmp_path / "a.json")))
    assert fileio.clean_stale_temps(str(tmp_path), max_age_s=0) == []
    assert os.path.exists(live)


def test_cleaner_removes_a_temp_whose_pid_a_later_process_reuses(tmp_path):
    # Made a day before this (live) process started: its owner cannot be us.
    made = _make(fileio.temp_path(str(tmp_path / "a.json")), age_s=86400)
    then = fileio._process_start(os.getpid()) - 3600
    os.utime(made, (then, then))
    assert fileio.clean_stale_temps(str(tmp_path), max_age_s=None) == [made]


def test_cleaner_keeps_another_hosts_temp_until_it_is_old(tmp_path, dead_pid):
    young = _make(fileio.temp_path(str(tmp_path / "a"), host="other-node", pid=dead_pid))
    old = _make(fileio.temp_path(str(tmp_path / "b"), host="other-node", pid=dead_pid),
                age_s=2 * 86400)
    assert fileio.clean_stale_temps(str(tmp_path)) == [old]
    assert fileio.clean_stale_temps(str(tmp_path), max_age_s=None) == []
    assert os.path.exists(young)


def test_cleaner_takes_a_glob_of_ownerless_temps_and_removes_them_by_age(tmp_path):
    old = _make(str(tmp_path / "ckpt-3_temp"), folder=True, age_s=2 * 86400)
    young = _make(str(tmp_path / "ckpt-4_temp"), folder=True)
    other = _make(str(tmp_path / "ckpt-3.index"), age_s=2 * 86400)
    assert fileio.clean_stale_temps(str(tmp_path), "ckpt-*_temp") == [old]
    assert fileio.clean_stale_temps(str(tmp_path), "ckpt-*_temp", max_age_s=None) == []
    assert fileio.clean_stale_temps(str(tmp_path), "ckpt-*_temp", max_age_s=0) == [young]
    assert os.path.exists(other)


def test_cleaner_of_a_missing_folder_removes_nothing(tmp_path):
    assert fileio.clean_stale_temps(str(tmp_path / "nowhere")) == []


def test_atomic_write_replaces_the_file_and_removes_its_dead_writers_temps(tmp_path,
                                                                           dead_pid):
    path = str(tmp_path / "sub" / "result.json")
    fileio.atomic_write_json(path, {"a": 1})
    stale = _make(fileio.temp_path(path, pid=dead_pid))
    live = _make(fileio.temp_path(path))
    fileio.atomic_write_json(path, {"a": 2})
    with open(path, encoding="utf-8") as f:
        assert f.read() == '{"a": 2}\n'
    assert not os.path.exists(stale) and os.path.exists(live)
    assert sorted(os.listdir(tmp_path / "sub")) == sorted(
        ["result.json", os.path.basename(live)])


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = str(tmp_path / "notes.txt")
    fileio.atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        fileio.atomic_write_text(path, b"not text")
    assert os.listdir(tmp_path) == ["notes.txt"]
    with open(path, encoding="utf-8") as f:
        assert f.read() == "old\n"
