"""Atomic file writes and the temporaries they leave when a process is killed.

An atomic write goes to a temporary sibling of the destination and is then renamed
into place with ``os.replace``: a reader (or a resumed job) sees the old file or the
new one, never half a file. A process killed in between leaves its temporary behind,
so every temporary of the package is named by :func:`temp_path`, which records its
owner::

    .<name>.tmp~<host>~<pid>~<random><suffix>      e.g. .config.gin.tmp~node7~4242~9f2c01ab

The leading dot hides it from ``ls`` and from globs such as ``*.keras``; ``.tmp~``
marks it; ``<host>`` and ``<pid>`` name the process that made it. From that,
:func:`clean_stale_temps` can tell a leftover (its process is dead) from a write in
progress (its process is alive, or runs on another host that shares the folder).
"""

import glob
import json
import os
import re
import secrets
import shutil
import socket
import time

TEMP_MARKER = ".tmp~"
"""Marks a temporary made by :func:`temp_path` (after the destination's name)."""

TEMP_GLOB = ".*" + TEMP_MARKER + "*"
"""Glob (relative to a folder) of every :func:`temp_path` temporary in that folder."""

DEFAULT_MAX_AGE_S = 24 * 3600
"""Age after which :func:`clean_stale_temps` removes a temporary whatever its owner."""

_TEMP_RE = re.compile(r"\.(?P<name>.+)" + re.escape(TEMP_MARKER)
                      + r"(?P<host>[A-Za-z0-9._-]+)~(?P<pid>\d+)~[0-9a-f]+")


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
    folder, name = os.path.split(os.path.abspath(path))
    host = _host() if host is None else host
    pid = os.getpid() if pid is None else int(pid)
    return os.path.join(folder, f".{name}{TEMP_MARKER}{host}~{pid}~"
                                f"{secrets.token_hex(4)}{suffix}")


def temp_owner(path):
    """``(host, pid)`` of a :func:`temp_path` name, or None for any other name."""
    match = _TEMP_RE.match(os.path.basename(path))
    return (match["host"], int(match["pid"])) if match else None


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


def _is_stale(path, max_age_s, now):
    try:
        modified = os.lstat(path).st_mtime
    except FileNotFoundError:  # gone already
        return False
    owner = temp_owner(path)
    if owner is not None and owner[0] == _host():
        return not _owner_alive(owner[1], modified)
    return max_age_s is not None and now - modified > max_age_s


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
        selects :func:`temp_path` names. Others' temporaries (``ckpt-*_temp``, say)
        record no owner and are only removed by age.
      max_age_s: the age after which an unverifiable temporary is removed; None keeps
        them whatever their age, 0 removes them all.

    Returns:
      The removed paths, sorted.
    """
    removed = []
    now = time.time()
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), pattern))):
        if not _is_stale(path, max_age_s, now):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:  # another cleaner was first
            continue
        removed.append(path)
    return removed


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` (creating its folder) through a temp file + rename.

    Stale temporaries of ``path`` left by killed writers are removed first.
    """
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    clean_stale_temps(folder, glob.escape("." + name) + TEMP_MARKER + "*")
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path, obj, indent=None, sort_keys=False):
    """Writes ``obj`` as JSON (one trailing newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
