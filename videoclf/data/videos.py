"""The videos a split's CSV lists, as the feature cache knows them: a stable key plus the file's stat."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from videoclf.config import Config
from videoclf.data.table import GROUP_COLUMN, read_video_table


@dataclass(frozen=True)
class VideoRef:
    """A video as the cache knows it: key relative to the data root, plus its stat."""

    key: str
    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def from_path(cls, key: str, path: Path) -> "VideoRef":
        try:
            stat = path.stat()
        except OSError:
            return cls(key, path, -1, -1)
        return cls(key, path, stat.st_size, stat.st_mtime_ns)


def split_videos(config: Config, split: str, csv_path: Path | None = None,
                 videos_dir: Path | None = None) -> tuple[list[VideoRef], list[str]]:
    """The videos (and their tags) of one split's CSV, keyed by their path relative to the data root
    (the absolute path for a video outside it); paths are normalised without touching the disk, so a
    key stays the same however the CSV spells the path."""
    return split_rows(config, split, csv_path, videos_dir)[:2]


def split_rows(config: Config, split: str, csv_path: Path | None = None, videos_dir: Path | None = None
               ) -> tuple[list[VideoRef], list[str], list[str] | None]:
    """:func:`split_videos` plus the CSV's optional ``group`` column (None when it has none), from one read."""
    csv_path = csv_path or config.data.csv_path(split)
    videos_dir = videos_dir or config.data.videos_dir(split)
    table = read_video_table(csv_path)
    root = Path(os.path.normpath(config.data.root.absolute()))
    refs = []
    for name in table["video_name"]:
        path = Path(os.path.normpath((videos_dir / name).absolute()))
        key = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        refs.append(VideoRef.from_path(key, path))
    groups = list(table[GROUP_COLUMN]) if GROUP_COLUMN in table.columns else None
    return refs, list(table["tag"]), groups


def too_many_bad(bad: int, listed: int, limit: float) -> bool:
    """Whether ``bad`` of ``listed`` videos is more than ``cache.max_bad_fraction`` allows (never all of them)."""
    return bad == listed or bad / listed > limit


def allowance(bad: int, listed: int) -> str:
    """How to go on without them: the smallest ``cache.max_bad_fraction`` that leaves them out."""
    return (f", or set cache.max_bad_fraction={-(-100 * bad // listed) / 100:g} to leave them out (they are then "
            "listed in bad_videos.csv)." if bad < listed else ".")
