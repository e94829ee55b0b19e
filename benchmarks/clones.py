"""What the side-by-side benchmarks share: this checkout's commit, and a fresh clone of the repository at a commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def head_commit() -> str:
    """This checkout's commit, short."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def fresh_clone(commit: str, folder: Path) -> Path:
    """A new ``git clone`` of this repository in ``folder``, checked out at ``commit`` (nothing generated in it)."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(folder)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=folder, check=True)
    return folder
