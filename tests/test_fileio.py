"""Atomic writes, folder installs, checksums, temporary names that record their owner
and the stale-temp cleaner: on a local folder and on TensorFlow's in-memory ``ram://``
file system (the stand-in for ``gs://``)."""

import hashlib
import logging
import os
import subprocess
import sys
import time
import uuid

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


# --------------------------------------------------------------------------------------
# The same operations on a local folder and on ram:// (gs://'s stand-in).


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    """An empty folder: local, or on TensorFlow's in-memory file system."""
    if request.param == "local":
        yield str(tmp_path)
        return
    tf = pytest.importorskip("tensorflow")  # registers ram://
    folder = f"ram://nasseg_test_{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(folder)
    yield folder
    tf.io.gfile.rmtree(folder)


def _write(path, data=b"x"):
    fileio.makedirs(os.path.dirname(path))
    with fileio._open(path, "wb") as f:  # pylint: disable=protected-access
        f.write(data)


def _read(path):
    with fileio._open(path, "rb") as f:  # pylint: disable=protected-access
        return f.read()


def _tree(folder):
    """``{relative path: bytes}`` of every file below ``folder``."""
    files = {}
    for name in fileio.listdir(folder):
        path = os.path.join(folder, name)
        if fileio.isdir(path):
            files.update({f"{name}/{k}": v for k, v in _tree(path).items()})
        else:
            files[name] = _read(path)
    return files


def test_atomic_write_replaces_the_file_and_leaves_no_temp(root):
    path = os.path.join(root, "sub", "result.json")
    fileio.atomic_write_json(path, {"a": 1})
    fileio.atomic_write_json(path, {"a": 2})
    assert _read(path) == b'{"a": 2}\n'
    assert fileio.listdir(os.path.join(root, "sub")) == ["result.json"]


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(root):
    path = os.path.join(root, "notes.txt")
    fileio.atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        fileio.atomic_write_bytes(path, 12345)  # fails inside the write
    assert fileio.listdir(root) == ["notes.txt"]
    assert _read(path) == b"old\n"


def test_atomic_path_renames_what_the_writer_wrote_and_keeps_its_suffix(root):
    path = os.path.join(root, "model.keras")
    with fileio.atomic_path(path, ".keras") as tmp:
        assert tmp.endswith(".keras") and fileio.temp_owner(tmp) is not None
        _write(tmp, b"weights")
    assert _read(path) == b"weights"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(path, ".keras") as tmp:
            _write(tmp, b"half")
            raise RuntimeError("writer failed")
    assert fileio.listdir(root) == ["model.keras"] and _read(path) == b"weights"


def test_atomic_path_of_a_remote_file_yields_a_local_temp_any_writer_can_use(root):
    path = os.path.join(root, "picture.png")
    with fileio.atomic_path(path, ".png") as tmp:
        assert not fileio.is_remote(tmp) and tmp.endswith(".png")
        assert fileio.temp_owner(tmp) is not None
        with open(tmp, "wb") as f:  # a writer that knows only local files
            f.write(b"png")
    assert _read(path) == b"png"
    assert fileio.listdir(root) == ["picture.png"]
    if fileio.is_remote(root):  # the local scratch file is gone too
        assert not os.path.exists(tmp)


def test_readers_and_stat_see_what_was_written(root):
    path = os.path.join(root, "sub", "info.json")
    fileio.atomic_write_json(path, {"a": [1, 2]})
    assert fileio.read_json(path) == {"a": [1, 2]}
    assert fileio.read_text(path) == '{"a": [1, 2]}\n'
    with fileio.open_file(path) as f:  # text mode
        assert f.read() == '{"a": [1, 2]}\n'
    with fileio.open_file(path, "rb") as f:
        f.seek(1)
        assert f.read(4) == b'"a":'
    stat = fileio.stat(path)
    assert stat.size == fileio.getsize(path) == len(b'{"a": [1, 2]}\n')
    if fileio.is_remote(root):  # ram:// records no times; no inodes remotely
        assert stat.mtime_ns is None and stat.inode is None
    else:
        assert stat.mtime_ns > 0 and stat.inode == os.stat(path).st_ino
    missing = os.path.join(root, "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        fileio.read_json(missing)
    with pytest.raises(FileNotFoundError):
        fileio.stat(missing)


def test_staging_dir_installs_a_new_folder_and_creates_its_parent(root):
    final = os.path.join(root, "exports", "model")
    with fileio.staging_dir(final) as staging:
        assert fileio.temp_owner(staging) is not None and fileio.listdir(staging) == []
        _write(os.path.join(staging, "variables", "data"), b"v")
    assert _tree(final) == {"variables/data": b"v"}
    assert fileio.listdir(os.path.join(root, "exports")) == ["model"]


def test_install_dir_replaces_an_existing_folder_and_leaves_no_temp(root):
    final = os.path.join(root, "model")
    _write(os.path.join(final, "old.txt"), b"old")
    _write(os.path.join(final, "variables", "old"), b"old")
    staging = fileio.temp_dir(final)
    _write(os.path.join(staging, "new.txt"), b"new")
    _write(os.path.join(staging, "variables", "new"), b"new")
    fileio.install_dir(staging, final)
    assert _tree(final) == {"new.txt": b"new", "variables/new": b"new"}
    assert fileio.listdir(root) == ["model"]


def test_a_remote_install_moves_the_top_folders_own_files_last(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    folder = f"ram://nasseg_test_{uuid.uuid4().hex}"
    final = os.path.join(folder, "export", "1")
    moved = []
    rename = tf.io.gfile.rename
    monkeypatch.setattr(tf.io.gfile, "rename", lambda src, dst, overwrite=False: (
        moved.append(dst[len(final) + 1:]), rename(src, dst, overwrite))[1])
    with fileio.staging_dir(final) as staging:
        for name in ("saved_model.pb", "variables/variables.index",
                     "variables/variables.data-00000-of-00001", "assets/vocab.txt"):
            _write(os.path.join(staging, name))
    assert moved[-1] == "saved_model.pb"  # what a model server waits for: last
    assert sorted(moved) == ["assets/vocab.txt", "saved_model.pb",
                             "variables/variables.data-00000-of-00001",
                             "variables/variables.index"]
    tf.io.gfile.rmtree(folder)


def test_failure_inside_staging_dir_leaves_the_old_folder_and_no_temp(root):
    final = os.path.join(root, "model")
    _write(os.path.join(final, "saved_model.pb"), b"old")
    with pytest.raises(RuntimeError):
        with fileio.staging_dir(final) as staging:
            _write(os.path.join(staging, "saved_model.pb"), b"half")
            raise RuntimeError("export failed")
    assert _tree(final) == {"saved_model.pb": b"old"}
    assert fileio.listdir(root) == ["model"]


def test_discard_dir_removes_the_folder_and_leaves_no_temp(root):
    folder = os.path.join(root, "cache")
    _write(os.path.join(folder, "shard.npy"))
    fileio.discard_dir(folder)
    fileio.discard_dir(folder)  # a missing folder is fine
    assert fileio.listdir(root) == []


def test_sha256_file_is_the_checksum_of_the_bytes(root):
    data = bytes(range(256)) * 40
    path = os.path.join(root, "shard.npy")
    _write(path, data)
    assert fileio.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert fileio.sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_glob_and_listdir_see_the_files_and_remove_tree_removes_them(root):
    for name in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
                 "val-00000-of-00001.tfrecord"):
        _write(os.path.join(root, "data", name))
    assert fileio.glob(os.path.join(root, "data", "train-*.tfrecord")) == [
        os.path.join(root, "data", f"train-0000{i}-of-00002.tfrecord") for i in (0, 1)]
    assert fileio.exists(os.path.join(root, "data")) and fileio.isdir(
        os.path.join(root, "data"))
    fileio.remove(os.path.join(root, "data", "val-00000-of-00001.tfrecord"))
    fileio.remove(os.path.join(root, "data", "val-00000-of-00001.tfrecord"))  # missing
    assert len(fileio.listdir(os.path.join(root, "data"))) == 2
    fileio.remove_tree(os.path.join(root, "data"))
    fileio.remove_tree(os.path.join(root, "data"))  # missing
    assert not fileio.exists(os.path.join(root, "data"))


def test_cleaner_removes_a_dead_processs_temps_and_keeps_a_live_ones(root, dead_pid):
    stale = fileio.temp_path(os.path.join(root, "a.json"), pid=dead_pid)
    _write(stale)
    live = fileio.temp_path(os.path.join(root, "a.json"))
    _write(live)
    assert fileio.clean_stale_temps(root) == [stale]
    assert fileio.listdir(root) == [os.path.basename(live)]


def test_remote_cleaner_keeps_another_hosts_temp_it_cannot_date_until_age_zero(dead_pid):
    tf = pytest.importorskip("tensorflow")
    folder = f"ram://nasseg_test_{uuid.uuid4().hex}"
    other = fileio.temp_path(os.path.join(folder, "a"), host="other-node", pid=dead_pid)
    _write(other)
    assert fileio.clean_stale_temps(folder) == []  # ram:// records no times
    assert fileio.clean_stale_temps(folder, max_age_s=0) == [other]
    tf.io.gfile.rmtree(folder)


def test_exclusive_lock_on_a_remote_path_warns_and_does_not_lock(caplog):
    pytest.importorskip("tensorflow")
    path = f"ram://nasseg_test_{uuid.uuid4().hex}/.cache.lock"
    with caplog.at_level(logging.WARNING, logger="nasseg_tf.fileio"):
        with fileio.exclusive_lock(path, timeout=0) as waited:
            with fileio.exclusive_lock(path, timeout=0) as waited_again:  # no lock held
                assert not waited and not waited_again
    assert "no locks" in caplog.text
    assert not fileio.exists(path)


def test_exclusive_lock_times_out_while_another_process_holds_it(tmp_path):
    path = str(tmp_path / ".cache.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match="still held"):
            with fileio.exclusive_lock(path, timeout=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with fileio.exclusive_lock(path, timeout=5) as waited:  # the kernel released it
        assert not waited


# --------------------------------------------------------------------------------------
# Local folder installs: the atomic swap and its fallback.


def _old_and_staging(tmp_path):
    final = str(tmp_path / "model")
    _write(os.path.join(final, "old.txt"), b"old")
    staging = fileio.temp_dir(final)
    _write(os.path.join(staging, "new.txt"), b"new")
    return final, staging


def test_install_dir_swaps_the_folders_in_one_step_where_the_kernel_can(tmp_path,
                                                                       monkeypatch):
    if fileio._renameat2() is None:  # pylint: disable=protected-access
        pytest.skip("no renameat2 in this C library")
    final, staging = _old_and_staging(tmp_path)
    swaps, exchange = [], fileio._exchange  # pylint: disable=protected-access
    monkeypatch.setattr(fileio, "_exchange", lambda a, b: swaps.append(exchange(a, b))
                        or swaps[-1])
    fileio.install_dir(staging, final)
    if swaps != [True]:
        pytest.skip("this file system cannot swap folders (RENAME_EXCHANGE)")
    assert _tree(final) == {"new.txt": b"new"} and os.listdir(tmp_path) == ["model"]


def test_install_dir_without_a_swap_moves_the_old_folder_aside_first(tmp_path,
                                                                    monkeypatch):
    monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    final, staging = _old_and_staging(tmp_path)
    fileio.install_dir(staging, final)
    assert _tree(final) == {"new.txt": b"new"} and os.listdir(tmp_path) == ["model"]


def test_install_dir_puts_the_old_folder_back_when_moving_the_new_one_fails(
        tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    final, staging = _old_and_staging(tmp_path)
    rename = os.rename

    def failing_rename(src, dst):
        if src == staging:
            raise OSError("disk went away")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk went away"):
        fileio.install_dir(staging, final)
    monkeypatch.undo()
    assert _tree(final) == {"old.txt": b"old"}
    assert sorted(os.listdir(tmp_path)) == sorted(["model", os.path.basename(staging)])


def test_a_killed_installs_old_folder_is_a_stale_temp(tmp_path, dead_pid):
    aside = fileio.temp_path(str(tmp_path / "model"), pid=dead_pid)
    _write(os.path.join(aside, "old.txt"))
    assert fileio.clean_stale_temps(str(tmp_path), fileio.temp_glob(
        str(tmp_path / "model"))) == [aside]


def test_a_scheme_tensorflow_has_no_file_system_for_is_named_in_one_error():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fileio.UnsupportedFileSystemError,
                       match=r"^nosuch://bucket/run: TensorFlow .* has no file system "
                             r"for 'nosuch://' \(it has: .*ram://"):
        fileio.makedirs("nosuch://bucket/run")
    assert isinstance(fileio.UnsupportedFileSystemError("x"), ValueError)  # exit 2
    # gs:// needs no plugin on this TensorFlow: the README's extra relies on this.
    assert "gs" in tf.io.gfile.get_registered_schemes()


@pytest.mark.parametrize("module", ["nasseg_tf.fileio",
                                    "nasseg_tf.search_space.genotypes"])
def test_importing_the_ground_floor_does_not_import_tensorflow(module):
    # ``import nasseg_tf`` registers the Keras layers, and Keras' TensorFlow backend
    # imports TensorFlow; on the JAX backend nothing of ours may.
    pytest.importorskip("jax")
    code = (f"import sys, {module}\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr[-2000:]
