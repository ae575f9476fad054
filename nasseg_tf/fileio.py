"""One durability policy: atomic writes, folder installs, temporaries, locks, checksums.

The files and folders the package writes for others to read go through this module,
so that a reader (or a resumed job) sees the old version or the new one, never half of
one, and what a killed process leaves behind can be recognised and removed.

**Atomic writes.** A file is written to a temporary sibling of its destination and
renamed into place (:func:`atomic_write_bytes` and friends; :func:`atomic_path` for a
writer that insists on writing the file itself, such as Keras' ``model.save``). A folder
is filled in a temporary sibling and installed whole (:func:`staging_dir`,
:func:`install_dir`).

**Flushing.** Before anything is renamed under its final name, its data is flushed to
disk (``fsync``: the file, or every file and folder of a folder), and after the rename
the folder holding it is flushed too, so a power cut cannot leave an empty or partial
file under the final name.

**Temporaries.** Every temporary of the package is named by :func:`temp_path`, which
records its owner::

    .<name>.tmp~<host>~<pid>~<random><suffix>      e.g. .config.gin.tmp~node7~4242~9f2c01ab

The leading dot hides it from ``ls`` and from globs such as ``*.keras``; ``.tmp~``
marks it; ``<host>`` and ``<pid>`` name the process that made it. From that,
:func:`clean_stale_temps` can tell a leftover (its process is dead) from a write in
progress (its process is alive, or runs on another host that shares the folder). The
helpers that make a temporary first remove the stale temporaries of the same
destination.

**Locks and checksums.** :func:`exclusive_lock` serialises processes (``flock``);
:func:`sha256_file` is the checksum of a file.

**Remote file systems.** A path with a URL scheme (``"://" in path``: ``gs://``,
``ram://`` ...) goes through ``tf.io.gfile``; TensorFlow is imported on the first such
path only, so this module (and everything that only writes local files) imports without
TensorFlow. Local paths use ``os`` and ``open``: faster, and ``fsync`` and ``flock``
work there. A scheme TensorFlow has no file system for raises
:class:`UnsupportedFileSystemError` (a ``ValueError``) naming those it has. Readers:
:func:`open_file` (a file object for ``json.load``, ``PIL.Image.open`` ...),
:func:`read_bytes`, :func:`read_text`, :func:`read_json`, :func:`stat`. Writers that
only know local files (Keras' ``model.save``, PIL, matplotlib) write remote files
through :func:`atomic_path`, which hands them a local temporary and uploads it.

``gs://`` is built into TensorFlow's Linux wheels (2.20, 2.21: ``gs`` is among
``tf.io.gfile.get_registered_schemes()``); credentials come from
``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login`` or the
VM's service account. The ``tensorflow-io-gcs-filesystem`` plugin is neither needed nor
usable there (its last release, 0.37.1, is built for TensorFlow 2.16 and fails to load
on 2.21).

What degrades on remote filesystems
-----------------------------------

Object stores (``gs://``) have no folders, no rename, no ``fsync`` and no locks; a
"rename" is a copy of each object followed by its deletion. Per operation:

* :func:`atomic_write_bytes` / :func:`atomic_path` / :func:`replace`: still atomic for
  readers (an object appears whole when its upload or copy completes), but the rename is
  a copy + delete, so it costs a second transfer of the data; a killed process can leave
  the temporary *and* the new file.
* :func:`install_dir` / :func:`staging_dir`: **not atomic.** The old folder is moved
  aside and the new one moved in, object by object (sub-folders' files first, the top
  folder's own files last); while that runs a reader can find the final folder missing,
  partly moved aside or partly installed, and a process killed in between can leave it so (the rest stays under
  :func:`temp_path` names until :func:`clean_stale_temps` removes it). Staging itself
  keeps its promise: nothing appears under the final name before the install starts.
  Where readers must never see a partial folder, write each version to a new name
  instead of replacing one. Locally a folder is installed by renames, see
  :func:`install_dir`.
* flushing (``fsync``): not done and not needed (an object is durable once written);
  :func:`fsync_dir` takes local paths only, :func:`write_file_synced` just writes a
  remote file.
* :func:`exclusive_lock`: **no lock.** It returns at once (yielding False) and logs a
  warning: ``tf.io.gfile`` cannot create a file only if it is absent, so a lock file could
  be taken by two processes at once, and a killed holder's lock file would never be
  released. Code that locks must stay correct without the lock (what is built under it
  may then be built twice, and the last install wins).
* :func:`clean_stale_temps`: works; where the file system records no modification time
  (``ram://``, folders on ``gs://``) a temporary of another host is kept whatever its
  age, unless ``max_age_s=0``.
* :func:`glob`: ``tf.io.gfile.glob``, whose ``*`` also matches names that start with a
  dot.
* :func:`atomic_path`: the writer writes a local file (in the system's temporary
  folder), then it is uploaded to a temporary beside the destination and renamed.
* :func:`stat`: no inode; ``ram://`` records no modification time either, so a cache
  keyed on :func:`stat` (the record pre-scan, the DPC feature cache) sees a rewritten
  ``ram://`` file of the same size as unchanged.

Writers outside this module: TensorFlow's own (checkpoints: data files first, then the
``checkpoint`` index by a temporary + rename; TensorBoard event files; SavedModels, which
:func:`staging_dir` installs) go through ``tf.io.gfile`` themselves. KerasTuner writes
its trial folders and reads ``oracle.json`` / ``trial.json`` through ``tf.io.gfile``
only when Keras' backend is TensorFlow (with another backend it uses ``open``: a remote
DPC project needs ``KERAS_BACKEND=tensorflow``, the default); the DPC oracle and tuner
write their state files atomically through this module.

Everything else assumes **one writer per run folder**: with no locks and no atomic
folder installs, two processes training or searching into the same ``gs://`` folder
can interleave files (a distributed run has one chief that writes, see
:mod:`nasseg_tf.train.experiment`; DPC workers write only their own trials' files and
``tuner<id>.json``, but with no lock several may build the same feature cache, the last
install winning).
"""

import collections
import contextlib
import ctypes
import errno
import fcntl
import fnmatch
import functools
import glob as _glob
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time

TEMP_MARKER = ".tmp~"
"""Marks a temporary made by :func:`temp_path` (after the destination's name)."""

TEMP_GLOB = ".*" + TEMP_MARKER + "*"
"""Glob (relative to a folder) of every :func:`temp_path` temporary in that folder."""

DEFAULT_MAX_AGE_S = 24 * 3600
"""Age after which :func:`clean_stale_temps` removes a temporary whatever its owner."""

_TEMP_RE = re.compile(r"\.(?P<name>.+)" + re.escape(TEMP_MARKER)
                      + r"(?P<host>[A-Za-z0-9._-]+)~(?P<pid>\d+)~[0-9a-f]+")


# --------------------------------------------------------------------------------------
# Paths: local (os) or remote (tf.io.gfile).


def is_remote(path):
    """Whether ``path`` has a URL scheme (``gs://``, ``ram://`` ...): such paths go
    through ``tf.io.gfile``, others through ``os``."""
    return "://" in os.fspath(path)


class UnsupportedFileSystemError(ValueError):
    """TensorFlow has no file system for the scheme of a path (``s3://`` on a wheel
    without it, a typo such as ``gcs://``)."""


_SCHEMES_SEEN = set()


def _tf(path=None):
    """TensorFlow, imported on first use (remote paths only).

    With ``path``: checks first that TensorFlow has a file system for its scheme
    (:class:`UnsupportedFileSystemError` naming the ones it has, instead of an
    ``UnimplementedError`` from deep inside a run).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    scheme = None if path is None else os.fspath(path).partition("://")[0]
    if scheme is not None and scheme not in _SCHEMES_SEEN:
        known = tf.io.gfile.get_registered_schemes()  # grows when plugins load: no cache
        if scheme not in known:
            raise UnsupportedFileSystemError(
                f"{path}: TensorFlow {tf.__version__} has no file system for "
                f"'{scheme}://' (it has: "
                f"{', '.join(sorted(k + '://' for k in known if k and k != 'file'))})")
        _SCHEMES_SEEN.add(scheme)
    return tf


def abspath(path):
    """``os.path.abspath`` of a local path; a remote path without trailing slashes."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.abspath(path)
    scheme, sep, rest = path.partition("://")
    return scheme + sep + rest.rstrip("/")


def exists(path):
    """Whether a file or folder ``path`` exists."""
    return _tf(path).io.gfile.exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path):
    """Whether ``path`` is a folder."""
    return _tf(path).io.gfile.isdir(path) if is_remote(path) else os.path.isdir(path)


def makedirs(path):
    """Creates folder ``path`` and its parents; an existing folder is fine."""
    if is_remote(path):
        _tf(path).io.gfile.makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path):
    """The sorted names in folder ``path`` (sub-folders without the trailing ``/``
    object stores give them)."""
    names = _tf(path).io.gfile.listdir(path) if is_remote(path) else os.listdir(path)
    return sorted(name.rstrip("/") for name in names)


def glob(pattern):
    """The sorted paths matching ``pattern`` (``glob.glob``; ``tf.io.gfile.glob`` for a
    remote pattern, where ``*`` also matches a leading dot)."""
    if is_remote(pattern):
        return sorted(_tf(pattern).io.gfile.glob(pattern))
    return sorted(_glob.glob(pattern))


def remove(path):
    """Removes file ``path``; a missing file is fine."""
    if is_remote(path):
        tf = _tf(path)
        try:
            tf.io.gfile.remove(path)
        except tf.errors.NotFoundError:
            pass
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _remove_tree(path):
    """:func:`remove_tree`, raising FileNotFoundError for a missing ``path``."""
    if is_remote(path):
        tf = _tf(path)
        try:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
        except tf.errors.NotFoundError:
            raise FileNotFoundError(path) from None
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def remove_tree(path, ignore_errors=False):
    """Removes folder ``path`` with everything in it (or a file); a missing path is
    fine.

    Args:
      path: the folder or file.
      ignore_errors: ignore every error, for a clean-up that must not hide the error
        being handled (what is left is a temporary that :func:`clean_stale_temps`
        removes later).
    """
    with contextlib.suppress(Exception if ignore_errors else FileNotFoundError):
        _remove_tree(path)


def open_file(path, mode="r"):
    """``open`` for a local path (text modes in UTF-8), ``tf.io.gfile.GFile`` for a
    remote one: a file object for readers such as ``json.load``, ``np.load`` or
    ``PIL.Image.open``. Writers of files others read should use :func:`atomic_path`
    or :func:`atomic_write_bytes` instead."""
    if is_remote(path):
        return _tf(path).io.gfile.GFile(path, mode)
    return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


_open = open_file


def read_bytes(path):
    """The bytes of file ``path``.

    Raises:
      FileNotFoundError: ``path`` does not exist (remote paths too).
    """
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    tf = _tf(path)
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"{path} not found") from None


def read_text(path):
    """The text (UTF-8) of file ``path``."""
    return read_bytes(path).decode("utf-8")


def read_json(path):
    """The JSON value in file ``path``."""
    return json.loads(read_text(path))


class FileStat(collections.namedtuple("FileStat", "size mtime_ns inode")):
    """What :func:`stat` tells of a file: ``size`` in bytes; ``mtime_ns``, the last
    modification in nanoseconds since the epoch, None where the file system records
    none (``ram://``); ``inode``, None on remote file systems (an object rewritten
    under the same name keeps its name but gets a new ``mtime_ns``)."""


def stat(path):
    """:class:`FileStat` of file ``path``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
    """
    if not is_remote(path):
        result = os.stat(path)
        return FileStat(result.st_size, result.st_mtime_ns, result.st_ino)
    tf = _tf(path)
    try:
        result = tf.io.gfile.stat(path)
    except tf.errors.NotFoundError:
        raise FileNotFoundError(path) from None
    return FileStat(int(result.length), int(result.mtime_nsec) or None, None)


def getsize(path):
    """The size of file ``path`` in bytes."""
    return stat(path).size


def sha256_file(path, chunk_bytes=1 << 20):
    """The hex SHA-256 of the bytes of file ``path`` (read ``chunk_bytes`` at a time)."""
    digest = hashlib.sha256()
    with open_file(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Temporaries: names that record their owner, and the cleaner of dead owners' ones.

def _host():
    """This host's name, reduced to the characters a temporary's name allows."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def temp_path(path, suffix="", host=None, pid=None):
    """A fresh temporary sibling of ``path`` that names its owner.

    Args:
      path: the destination (file or folder) the temporary will replace.
      suffix: appended to the name, e.g. ``".keras"`` for a writer that insists on an
        extension.
      host: the owner's host name (default: this host); for tests and tools.
      pid: the owner's process id (default: this process); for tests and tools.

    Returns:
      ``<folder of path>/.<name>.tmp~<host>~<pid>~<8 random hex digits><suffix>``; no
      file is created.
    """
    folder, name = os.path.split(abspath(path))
    host = _host() if host is None else host
    pid = os.getpid() if pid is None else int(pid)
    return os.path.join(folder, f".{name}{TEMP_MARKER}{host}~{pid}~"
                                f"{secrets.token_hex(4)}{suffix}")


def temp_owner(path):
    """``(host, pid)`` of a :func:`temp_path` name, or None for any other name."""
    match = _TEMP_RE.match(os.path.basename(path))
    return (match["host"], int(match["pid"])) if match else None


def temp_glob(path):
    """Glob (relative to the folder of ``path``) of the :func:`temp_path` temporaries
    of ``path``, for :func:`clean_stale_temps`."""
    return _glob.escape("." + os.path.basename(abspath(path))) + TEMP_MARKER + "*"


def legacy_mkdtemp_glob(prefix):
    """Glob of the folders ``tempfile.mkdtemp(prefix=prefix)`` makes (``prefix`` and 8
    characters): the package's temporaries before :func:`temp_path`. They record no
    owner, so :func:`clean_stale_temps` removes them by age."""
    return _glob.escape(prefix) + "[a-z0-9_]" * 8


def _process_start(pid):
    """When process ``pid`` started (seconds since the epoch), or None where /proc
    cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f
                        if line.startswith(b"btime "))
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22: starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_alive(pid, made_at):
    """Whether process ``pid`` of this host, which made a file last modified at
    ``made_at``, still runs (True when that cannot be told).

    A process that started after the file was made reuses a dead owner's pid (a
    restarted container numbers its processes the same way). A minute of slack
    covers a shared folder whose server's clock runs behind this host's.
    """
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; or not a pid
        return True
    started = _process_start(pid)
    return started is None or started <= made_at + 60.0


def _modified(path):
    """When ``path`` was last modified (seconds since the epoch), or None where the file
    system does not say (``ram://``, folders of object stores).

    Raises:
      FileNotFoundError: ``path`` is gone.
    """
    if not is_remote(path):
        return os.lstat(path).st_mtime
    tf = _tf(path)
    try:
        nanoseconds = tf.io.gfile.stat(path).mtime_nsec
    except tf.errors.NotFoundError:
        raise FileNotFoundError(path) from None
    return nanoseconds / 1e9 if nanoseconds else None


def _is_stale(path, max_age_s, now):
    try:
        modified = _modified(path)
    except FileNotFoundError:  # gone already
        return False
    owner = temp_owner(path)
    if owner is not None and owner[0] == _host():
        return not _owner_alive(owner[1], now if modified is None else modified)
    if max_age_s is None:
        return False
    return max_age_s <= 0 or (modified is not None and now - modified > max_age_s)


def _matching(folder, pattern):
    """The paths in ``folder`` whose names match ``pattern`` (sorted; none when the
    folder is missing)."""
    if not is_remote(folder):
        return sorted(_glob.glob(os.path.join(_glob.escape(folder), pattern)))
    try:
        names = listdir(folder)
    except _tf().errors.NotFoundError:
        return []
    return [os.path.join(folder, name) for name in names
            if fnmatch.fnmatchcase(name, pattern)]


def clean_stale_temps(folder, pattern=TEMP_GLOB, max_age_s=DEFAULT_MAX_AGE_S):
    """Removes the temporaries in ``folder`` that nobody will finish.

    A temporary (file or folder) matching ``pattern`` is removed when

    * its name (see :func:`temp_path`) says it belongs to a process of this host that
      is no longer running (or whose pid a later process now uses) — one of a live
      process is always kept, whatever its age; or
    * its owner cannot be checked (another host, or a name that records no owner) and
      it was last modified more than ``max_age_s`` seconds ago.

    Args:
      folder: the folder to clean (not recursive); a missing folder is fine.
      pattern: glob relative to ``folder`` of what counts as a temporary; the default
        selects :func:`temp_path` names, :func:`temp_glob` those of one destination.
        Others' temporaries (``ckpt-*_temp``, say) record no owner and are only removed
        by age.
      max_age_s: the age after which an unverifiable temporary is removed; None keeps
        them whatever their age, 0 removes them all.

    Returns:
      The removed paths, sorted.
    """
    removed = []
    now = time.time()
    for path in _matching(folder, pattern):
        if not _is_stale(path, max_age_s, now):
            continue
        try:
            _remove_tree(path)
        except FileNotFoundError:  # another cleaner was first
            continue
        removed.append(path)
    return removed


def _fresh_temp(path, suffix=""):
    """A :func:`temp_path` of ``path`` (absolute) once ``path``'s folder exists and the
    stale temporaries of ``path`` are removed."""
    path = abspath(path)
    folder = os.path.dirname(path)
    makedirs(folder)
    clean_stale_temps(folder, temp_glob(path))
    return temp_path(path, suffix)


def temp_dir(path):
    """Creates and returns a fresh, empty :func:`temp_path` folder beside ``path``.

    For scratch space that is removed afterwards (by the caller, with
    :func:`remove_tree`): a killed process' folder is then recognised by
    :func:`clean_stale_temps`. Stale temporaries of ``path`` are removed first.
    """
    tmp = _fresh_temp(path)
    makedirs(tmp)
    return tmp


# --------------------------------------------------------------------------------------
# Atomic writes of files.


def replace(src, dst):
    """Renames file ``src`` over ``dst`` (replacing it): the last step of an atomic
    write.

    Locally ``src`` is flushed to disk first, then renamed (``os.replace``: atomic),
    then ``dst``'s folder is flushed. Remotely ``tf.io.gfile.rename`` with overwrite (a
    copy + delete on object stores). ``src`` and ``dst`` must be on the same file
    system.
    """
    if is_remote(src) or is_remote(dst):
        _tf(dst).io.gfile.rename(src, dst, overwrite=True)
        return
    _fsync(src)
    os.replace(src, dst)
    _fsync(os.path.dirname(os.path.abspath(dst)))


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """A temporary path to write ``path`` at, renamed into place when the block ends.

    For writers that insist on writing a file themselves. Yields a fresh
    :func:`temp_path` of ``path`` (with ``suffix``, for a writer that wants an
    extension); when the block ends without an exception, the file written there is
    renamed over ``path`` (:func:`replace`), otherwise it is removed. ``path``'s folder
    is created and its stale temporaries removed first.

    For a remote ``path`` the yielded temporary is a local file (in the system's
    temporary folder, named by :func:`temp_path`), so that any writer works
    (``model.save``, PIL, matplotlib, h5py); it is uploaded to a temporary beside
    ``path`` and renamed into place when the block ends, and removed in any case.

    Example::

        with atomic_path("gs://bucket/run/model.keras", ".keras") as tmp:
            model.save(tmp)
    """
    path = abspath(path)
    tmp = _fresh_temp(path, suffix)
    local = _local_scratch(path, suffix) if is_remote(path) else None
    try:
        yield local or tmp
        if local:
            _tf(tmp).io.gfile.copy(local, tmp, overwrite=True)
        replace(tmp, path)
    except BaseException:
        remove_tree(tmp, ignore_errors=True)
        raise
    finally:
        if local:
            remove_tree(local, ignore_errors=True)


def _local_scratch(path, suffix=""):
    """A :func:`temp_path` in the system's temporary folder for the remote ``path``
    (stale ones of the same name removed first); nothing is created."""
    local = os.path.join(tempfile.gettempdir(), os.path.basename(path))
    clean_stale_temps(tempfile.gettempdir(), temp_glob(local))
    return temp_path(local, suffix)


def atomic_write_bytes(path, data):
    """Writes ``data`` to ``path`` (creating its folder) through a temporary file that
    is flushed to disk and renamed into place (:func:`atomic_path`).

    Stale temporaries of ``path`` left by killed writers are removed first.
    """
    with atomic_path(path) as tmp:
        with open_file(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    """Writes ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent=None, sort_keys=False):
    """Writes ``obj`` as JSON (one trailing newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


# --------------------------------------------------------------------------------------
# Folders: filled aside, installed whole.

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.lru_cache(maxsize=None)
def _renameat2():
    """The C library's ``renameat2``, or None where there is none (not Linux, an old
    glibc, musl)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a, b):
    """Swaps two existing local paths in one atomic step (``renameat2`` with
    ``RENAME_EXCHANGE``); False, with nothing changed, where the system or the file
    system cannot (NFS, for one)."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def _move_remote(src, dst):
    """Moves a remote file or folder: each file renamed (on object stores: copied and
    deleted) to the same place under ``dst``, folders made, then ``src`` removed.

    The deepest folders' files go first and the top folder's own files last, so the
    file a reader looks for first (a SavedModel's ``saved_model.pb``, a feature cache's
    manifest) appears only after everything below it.
    """
    gfile = _tf(src).io.gfile
    if not gfile.isdir(src):
        gfile.rename(src, dst, overwrite=True)
        return
    for folder, _, files in gfile.walk(src, topdown=False):
        target = dst + folder[len(src):]
        gfile.makedirs(target)
        for name in files:
            gfile.rename(os.path.join(folder, name), os.path.join(target, name),
                         overwrite=True)
    remove_tree(src, ignore_errors=True)


def _move(src, dst):
    """Renames ``src`` to ``dst`` (an absent path): ``os.rename`` or
    :func:`_move_remote`."""
    if is_remote(src):
        _move_remote(src, dst)
    else:
        os.rename(src, dst)


def _sync_tree(path):
    """Flushes every file and folder of the local tree ``path`` to disk."""
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync(folder)


def _restore(old, final, remote):
    """Puts the old folder back after a failed install (without hiding the failure)."""
    try:
        if remote:
            remove_tree(final)  # what the failed copy left
        _move(old, final)
    except Exception:  # pylint: disable=broad-except
        logging.getLogger(__name__).error(
            "could not put the old %s back; it is in %s", final, old, exc_info=True)


def install_dir(staging, final):
    """Moves the fully written folder ``staging`` to ``final``, replacing ``final``.

    Readers see the old ``final`` or the new one, never a mix:

    * locally, ``staging`` is flushed to disk first (every file and folder); a missing
      ``final`` is then made by one rename; an existing one is swapped with ``staging``
      in one atomic step (``renameat2(RENAME_EXCHANGE)``: Linux on ext4, xfs, btrfs,
      tmpfs ...) where the system can, else renamed aside to a :func:`temp_path` name
      before ``staging`` is renamed to ``final`` — for the moment between those two
      renames ``final`` is missing. ``final``'s folder is flushed and the old folder
      deleted last;
    * remotely the same steps are copies, and not atomic: see the module docstring.

    If moving ``staging`` in fails, the old ``final`` is put back. A process killed
    after the swap leaves the old folder under a :func:`temp_path` name, which
    :func:`clean_stale_temps` removes.

    Args:
      staging: the complete new folder; a sibling of ``final`` (same file system), as
        :func:`staging_dir` makes it. It is gone afterwards.
      final: the destination folder (need not exist).
    """
    staging, final = abspath(staging), abspath(final)
    remote = is_remote(final)
    if not remote:
        _sync_tree(staging)
    if not exists(final):
        _move(staging, final)
        old = None
    elif not remote and _exchange(staging, final):
        old = staging
    else:
        old = temp_path(final)
        _move(final, old)
        try:
            _move(staging, final)
        except BaseException:
            _restore(old, final, remote)
            raise
    if not remote:
        _fsync(os.path.dirname(final))
    if old is not None:
        remove_tree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(final):
    """A fresh folder to fill, installed as ``final`` when the block ends.

    Yields a new empty :func:`temp_path` sibling of ``final`` (``final``'s folder is
    created, stale staging folders of killed writers removed). When the block ends
    without an exception the folder is installed with :func:`install_dir`, replacing an
    existing ``final``; on an exception it is removed and ``final`` is left as it was.

    Example::

        with staging_dir("exports/model") as staging:
            tf.saved_model.save(module, staging)
    """
    staging = temp_dir(final)
    try:
        yield staging
        install_dir(staging, final)
    except BaseException:
        remove_tree(staging, ignore_errors=True)
        raise


def discard_dir(path):
    """Removes folder ``path`` so that readers see it whole or not at all: it is renamed
    to a :func:`temp_path` name first (one rename locally; object by object remotely),
    then deleted. A missing folder is fine."""
    path = abspath(path)
    if not exists(path):
        return
    aside = temp_path(path)
    _move(path, aside)
    remove_tree(aside, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Flushing and locks (local paths).


def _fsync(path):
    """Flushes a local file's data or a folder's entries to disk; a file system that
    cannot flush a folder (EINVAL) is fine."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def fsync_dir(path):
    """Flushes a local folder's entries (new names, renames) to disk."""
    _fsync(path)


def write_file_synced(path, data):
    """Writes ``data`` to ``path`` and flushes it to disk before returning (a remote
    file is written through ``tf.io.gfile``: durable once closed, nothing to flush).

    Not atomic: for files inside a :func:`staging_dir` folder, or temporaries."""
    if is_remote(path):
        with open_file(path, "wb") as f:
            f.write(data)
        return
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def exclusive_lock(path, timeout=None):
    """An exclusive ``fcntl.flock`` on ``path``; yields True if it had to wait.

    The kernel releases the lock when the process dies, so a crashed builder never
    blocks the others. Lock files are left in place (deleting them would race).

    A remote ``path`` is not locked (see the module docstring): the block runs at once,
    yielding False, after a warning.

    Raises:
      TimeoutError: the lock is still held by another process after ``timeout``
        seconds (None: wait forever).
    """
    if is_remote(path):
        logging.getLogger(__name__).warning(
            "%s: remote file systems have no locks; running without one", path)
        yield False
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + float(timeout)
                while True:
                    time.sleep(0.05)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise TimeoutError(
                                f"lock {path} is still held after {timeout} s (another "
                                "process holds it)") from None
        yield waited
    finally:
        os.close(fd)  # releases the lock
