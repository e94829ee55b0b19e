"""One way to take a cross-process file lock: try briefly, say what we wait for, then wait.

Used wherever two videoclf processes could write the same thing at once: a
generated data set, a feature cache, a search's tuner directory, a fresh
SQLite tracking store.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from filelock import FileLock, Timeout


@contextlib.contextmanager
def waiting_lock(path: Path | str, wait_message: str, lock: FileLock | None = None):
    """Holds the lock file ``path`` for the block; prints ``wait_message`` once if another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock or FileLock(str(path))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        print(f"{wait_message} (lock {path}) ...", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
