"""Reading and checking ``video_name,tag`` CSVs (the seed's layout)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from videoclf.errors import DataError

COLUMNS = ("video_name", "tag")
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def group_id(video_name: str) -> str | None:
    """UCF101 group (one actor/scene) from ``v_Class_gNN_cMM.avi``; None if absent."""
    match = _GROUP.search(PurePosixPath(video_name).name)
    return match.group(1) if match else None


def safe_relative(name: str, csv_path: Path) -> str:
    """Refuses names that would escape the data root (absolute, ``..``, drive letters)."""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", posix) or ".." in path.parts:
        raise DataError(
            f"{csv_path}: video_name {name!r} points outside the data root. "
            "Expected a path relative to the videos folder, without '..'."
        )
    return str(path)


def read_video_table(csv_path: str | Path) -> pd.DataFrame:
    """Loads and validates one split's CSV: columns, empty cells, duplicates, paths."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"CSV not found: {csv_path}. Check data.root and data.train_csv/test_csv in the config.")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path} is not a readable CSV: {exc}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{csv_path}: expected columns video_name,tag. Received: {','.join(map(str, table.columns))}"
        )
    table = table[list(COLUMNS)].apply(lambda col: col.str.strip())
    if table.empty:
        raise DataError(f"{csv_path} lists no videos.")
    empty = table[(table["video_name"] == "") | (table["tag"] == "")]
    if not empty.empty:
        line = int(empty.index[0]) + 2  # header is line 1
        raise DataError(f"{csv_path}, line {line}: empty video_name or tag.")
    table["video_name"] = [safe_relative(n, csv_path) for n in table["video_name"]]
    dupes = table["video_name"][table["video_name"].duplicated()]
    if not dupes.empty:
        raise DataError(f"{csv_path}: video {dupes.iloc[0]!r} is listed more than once.")
    return table.reset_index(drop=True)
