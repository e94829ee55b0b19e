"""Reading and checking ``video_name,tag`` CSVs (the seed's layout)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from videoclf.errors import DataError

COLUMNS = ("video_name", "tag")
GROUP_COLUMN = "group"  # optional: videos of one source (actor, scene, long recording) share a group
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def group_id(video_name: str) -> str | None:
    """UCF101 group (one actor/scene) from ``v_Class_gNN_cMM.avi``; None if absent."""
    match = _GROUP.search(PurePosixPath(video_name).name)
    return match.group(1) if match else None


def normalised_name(name: str) -> str:
    """A ``video_name`` as a POSIX path: relative to the videos folder, or absolute; ``..`` is allowed.

    A CSV is the user's own file on the user's machine (``find /data -name '*.avi'`` gives absolute
    paths), so it may point anywhere; the trust boundary is the network (see ``videoclf serve``).
    """
    return name.replace("\\", "/")


def read_video_table(csv_path: str | Path) -> pd.DataFrame:
    """Loads and validates one split's CSV: columns (``video_name,tag``, optionally ``group``), empty cells,
    duplicates."""
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
    table = table[[*COLUMNS, *([GROUP_COLUMN] if GROUP_COLUMN in table.columns else [])]].apply(
        lambda col: col.str.strip())
    if table.empty:
        raise DataError(f"{csv_path} lists no videos.")
    empty = table[(table["video_name"] == "") | (table["tag"] == "")]
    if not empty.empty:
        line = int(empty.index[0]) + 2  # header is line 1
        raise DataError(f"{csv_path}, line {line}: empty video_name or tag.")
    table["video_name"] = [normalised_name(n) for n in table["video_name"]]
    dupes = table["video_name"][table["video_name"].duplicated()]
    if not dupes.empty:
        raise DataError(f"{csv_path}: video {dupes.iloc[0]!r} is listed more than once.")
    return table.reset_index(drop=True)
