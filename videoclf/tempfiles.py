"""Temporary folders named after the process that made them, and swept once that process is gone.

A folder is removed when its block ends, on every Python exit path; what a
``kill -9``, or a request cut when the server's grace period ends, leaves
behind is swept by the next videoclf process that starts work (``tune``,
loading a registered model) once its owner no longer runs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

_NAME = re.compile(r"^videoclf-[a-z]+-(\d+)-")
STALE_AFTER_S = 60.0  # younger folders are left alone, whoever made them


def private_folder(kind: str) -> tempfile.TemporaryDirectory:
    """``tempfile.TemporaryDirectory`` named ``videoclf-<kind>-<pid>-…`` (the sweep's way to find its owner)."""
    return tempfile.TemporaryDirectory(prefix=f"videoclf-{kind}-{os.getpid()}-")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale(folder: str | Path | None = None, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Removes videoclf's temporary folders whose process is gone and that are older than ``older_than_s``;
    returns them. Never raises: a folder it cannot remove stays."""
    removed = []
    root = Path(folder or tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if not entry.is_dir() or entry.is_symlink() or now - entry.stat().st_mtime < older_than_s:
                continue
        except OSError:
            continue
        if not _running(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed
