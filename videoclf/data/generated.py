"""What every generated data set shares: writing videos and CSVs, and knowing when a set is current.

A set is rewritten only when its manifest (generator version, parameters,
OpenCV version) changed or a listed video is missing, so re-running a job
never regenerates data it already has.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

FPS = 25
MARKER = ".videoclf-generated"  # written first, never removed: this folder belongs to a generator
MANIFESTS = ("demo_manifest.json", "photo_motion_manifest.json")


def holds_user_data(out_dir: Path) -> bool:
    """True when ``out_dir`` has a ``train.csv`` / ``test.csv`` that no generator of ours wrote.

    A generator never writes into such a folder: it would overwrite the user's CSVs.
    """
    has_csv = (out_dir / "train.csv").is_file() or (out_dir / "test.csv").is_file()
    ours = (out_dir / MARKER).exists() or any((out_dir / name).exists() for name in MANIFESTS)
    return has_csv and not ours


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    """Writes BGR frames as an MJPG AVI (a codec every OpenCV build can write)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} (MJPG codec unavailable?)")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def is_current(out_dir: Path, manifest_name: str, manifest: dict) -> bool:
    """True when ``out_dir`` holds the set ``manifest`` describes, with every listed video present."""
    try:
        if json.loads((out_dir / manifest_name).read_text()) != manifest:
            return False
    except (OSError, json.JSONDecodeError):
        return False
    for split in ("train", "test"):
        csv_path = out_dir / f"{split}.csv"
        if not csv_path.is_file():
            return False
        with csv_path.open() as fh:
            if not all((out_dir / row["video_name"]).is_file() for row in csv.DictReader(fh)):
                return False
    return True


def start_set(out_dir: Path, manifest_name: str) -> None:
    """Makes the folder and drops the old manifest, so a set interrupted while written is never current."""
    if holds_user_data(out_dir):
        from videoclf.errors import DataError

        raise DataError(f"{out_dir} holds a train.csv/test.csv that videoclf did not generate; refusing to "
                        "overwrite it. Choose another output folder (data.root or --out).")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).touch()
    (out_dir / manifest_name).unlink(missing_ok=True)


def finish_set(out_dir: Path, manifest_name: str, manifest: dict, rows: dict[str, list[tuple[str, str]]]) -> None:
    """Writes ``train.csv`` / ``test.csv`` (``video_name,tag``), then the manifest that marks the set current."""
    for split, split_rows in rows.items():
        with (out_dir / f"{split}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["video_name", "tag"])
            writer.writerows(split_rows)
    (out_dir / manifest_name).write_text(json.dumps(manifest, indent=2, sort_keys=True))
