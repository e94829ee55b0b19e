"""Builds ``train.csv``/``test.csv`` from the official UCF101 layout (or checks the seed's).

Official: ``ROOT/ClassName/v_ClassName_gNN_cMM.avi`` plus
``ucfTrainTestlist/trainlist0K.txt`` / ``testlist0K.txt``. Seed notebook:
``ROOT/train/``, ``ROOT/test/``, ``ROOT/train.csv``, ``ROOT/test.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from videoclf.data.table import read_video_table
from videoclf.errors import DataError

SEED_CLASSES = ("CricketShot", "PlayingCello", "Punch", "ShavingBeard", "TennisSwing")


def is_seed_layout(root: Path) -> bool:
    return all((root / p).exists() for p in ("train", "test", "train.csv", "test.csv"))


def _read_list(path: Path, classes: set[str]) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(f"UCF101 split list not found: {path}. Pass --splits with the ucfTrainTestlist folder.")
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name = line.split()[0].replace("\\", "/")
        label = PurePosixPath(name).parts[0]
        if label in classes:
            rows.append((name, label))
    return rows


def _check_exist(root: Path, rows: list[tuple[str, str]], source: Path) -> None:
    missing = [name for name, _ in rows if not (root / name).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} videos listed in {source} are missing under {root}, "
            f"e.g. {missing[0]}. Expected the UCF101 layout ROOT/ClassName/v_ClassName_gNN_cMM.avi."
        )


def prepare_ucf101(root: str | Path, splits_dir: str | Path | None = None,
                   classes: tuple[str, ...] | list[str] = SEED_CLASSES, split: int = 1,
                   out_dir: str | Path | None = None) -> dict[str, str]:
    """Writes the CSVs for ``classes`` and returns the config overrides that use them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"UCF101 root not found: {root}")
    if is_seed_layout(root):
        for split_name in ("train", "test"):
            table = read_video_table(root / f"{split_name}.csv")
            _check_exist(root / split_name, list(zip(table.video_name, table.tag)), root / f"{split_name}.csv")
        return {"data.root": str(root), "data.train_videos": "train", "data.test_videos": "test"}
    if split not in (1, 2, 3):
        raise DataError(f"Expected --split 1, 2 or 3 (UCF101's official splits). Received: {split}")
    splits_dir = Path(splits_dir) if splits_dir else root / "ucfTrainTestlist"
    out_dir = Path(out_dir) if out_dir else root
    wanted = set(classes)
    overrides = {"data.root": str(root), "data.train_videos": ".", "data.test_videos": ".",
                 "data.train_csv": str((out_dir / "train.csv").resolve()),
                 "data.test_csv": str((out_dir / "test.csv").resolve())}
    for split_name in ("train", "test"):
        source = splits_dir / f"{split_name}list0{split}.txt"
        rows = _read_list(source, wanted)
        found = {label for _, label in rows}
        if wanted - found:
            raise DataError(f"{source} lists no videos for class(es) {sorted(wanted - found)}. "
                            "Check the class names (case matters), e.g. CricketShot.")
        _check_exist(root, rows, source)
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / f"{split_name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["video_name", "tag"])
            writer.writerows(rows)
    return overrides
