"""Atomic file writes: a reader (or a resumed job) sees the old file or the new one,
never half a file — a temporary file in the same folder, then ``os.replace``."""

import json
import os
import threading


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` (creating its folder) through a temp file + rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def atomic_write_json(path, obj, indent=None, sort_keys=False):
    """Writes ``obj`` as JSON (one trailing newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
