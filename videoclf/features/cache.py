"""The HDF5 feature cache: one folder per key, crash-safe, shared by processes.

Layout of ``features_cache/<slug>/``:

- ``features.h5``: entries consolidated from earlier runs;
- ``parts/*.h5``: entries committed since, one small file per model batch,
  written to a temporary name and renamed, so ``kill -9`` loses at most the
  videos in flight and never leaves a half-written file under a real name;
- ``.lock``: held by the one process that extracts into (or compacts) the cache;
- ``bad_videos.csv``: the videos that could not be decoded, with reasons (merged across splits and runs).

A shard writer (``extract --shard I/N``) owns ``features.shard-I-of-N.h5``, its
own parts, ``.lock.shard-I-of-N`` and ``bad_videos.shard-I-of-N.csv``, so N
processes or machines fill one cache side by side; readers see the union of
every file, nothing is copied between them.

The motion stream (``motion.enabled``) is a cache of its own kind beside the
appearance ones, ``features_cache/motion-<algorithm>-w<width>-L<len>-<hash>/``,
keyed by what changes the flow descriptors (algorithm, preset, frame width,
grid, descriptor version, crop, sampling rule, length), with the same files and
guarantees; its ``features`` are the step descriptors and its ``mask`` says
which steps exist (a sampled frame with a successor).

Every HDF5 file holds the same datasets, one row per video: ``video`` (path
relative to the data root), ``size`` and ``mtime_ns`` (to notice a changed
file), ``n_frames`` (frames that really decoded), ``mask`` (positions holding
real frames) and ``features`` ``(N, max_seq_length, dim)``. Attributes record
the full key and the versions that wrote it. Later files win over earlier
ones, so a re-extracted video supersedes its stale entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock

from videoclf.data.videos import VideoRef
from videoclf.errors import CacheError
from videoclf.versions import installed_versions

SCHEMA_VERSION = 1
CONSOLIDATED = "features.h5"


class CacheWriteError(CacheError):
    """Writing into the cache folder failed (full disk, read-only folder, quota); committed entries are kept."""

    def __init__(self, folder: Path, reason: str):
        self.folder, self.reason = folder, reason
        super().__init__(f"Cannot write to the feature cache folder {folder}: {reason}. Make room or make it "
                         "writable, or set cache.dir to another folder (e.g. --set cache.dir=/scratch/features_cache); "
                         "re-running resumes from what was written.")


def os_error_reason(exc: OSError) -> str:
    """The OS's own words for a failed file operation (strerror), else the exception's first line."""
    text = str(exc).strip()
    return exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)


@dataclass(frozen=True)
class Entry:
    """One extracted video, ready to be written."""

    video: VideoRef
    features: np.ndarray  # (max_seq_length, dim)
    n_frames: int
    mask: np.ndarray  # (max_seq_length,) bool


@dataclass(frozen=True)
class _Location:
    file: Path
    row: int
    size: int
    mtime_ns: int


def cache_slug(key: dict) -> str:
    """Folder name: readable prefix plus a hash of the full key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    if key.get("stream") == "motion":
        return f"motion-{key['algorithm']}-w{key['frame_width']}-L{key['max_seq_length']}-{digest}"
    return f"{key['extractor']}-{key['image_size']}px-L{key['max_seq_length']}-{digest}"


class FeatureCache:
    """Reads and appends cached features for one key (see module docstring)."""

    def __init__(self, root: str | Path, key: dict, dim: int, dtype: str = "float16",
                 shard: tuple[int, int] | None = None):
        self.key = dict(key)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.max_length = int(key["max_seq_length"])
        self.path = Path(root) / cache_slug(self.key)
        self.parts = self.path / "parts"
        # What this writer owns: everything else in the folder is only read.
        self.owner = f"shard-{shard[0]}-of-{shard[1]}" if shard else "main"
        suffix = f".{self.owner}" if shard else ""
        self.consolidated = self.path / f"features{suffix}.h5"
        self.report = self.path / f"bad_videos{suffix}.csv"
        self._lock = FileLock(str(self.path / f".lock{suffix}"))
        self._part_counter = 0

    # -- locking ---------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, wait_message: str = "waiting for another process using the cache"):
        """Exclusive access for the block; says so when it has to wait."""
        from videoclf.locks import waiting_lock

        with contextlib.ExitStack() as held:
            try:
                self.parts.mkdir(parents=True, exist_ok=True)
                held.enter_context(waiting_lock(self._lock.lock_file, f"{self.path}: {wait_message}", self._lock))
            except OSError as exc:  # a read-only or full file system, a folder we may not write
                raise CacheWriteError(self.path, os_error_reason(exc)) from None
            yield self

    # -- reading ---------------------------------------------------------
    def bad_videos(self) -> dict[str, str]:
        """Video key → reason, from every writer's ``bad_videos*.csv`` (videos extraction skipped)."""
        import csv

        bad: dict[str, str] = {}
        for report in sorted(self.path.glob("bad_videos*.csv")):
            with report.open(newline="") as fh:
                bad.update({row["video"]: row["reason"] for row in csv.DictReader(fh) if row.get("video")})
        return bad

    def files(self) -> list[Path]:
        """Consolidated files first (``features.h5``, then shards), then parts in commit order (later wins)."""
        out = sorted(self.path.glob("features*.h5"), key=lambda p: (p.name != CONSOLIDATED, p.name))
        if self.parts.is_dir():
            out += sorted(self.parts.glob("part-*.h5"))
        return out

    def _own_parts(self) -> list[Path]:
        return sorted(self.parts.glob(f"part-*-{self.owner}-*.h5")) if self.parts.is_dir() else []

    def _open(self, file: Path) -> h5py.File:
        try:
            handle = h5py.File(file, "r")
        except OSError as exc:
            if not file.exists():
                raise _Vanished(file) from None  # merged and removed by a writer meanwhile
            raise CacheError(
                f"Cache file {file} is corrupt or unreadable ({exc}). Delete it to re-extract what it held "
                f"(rm {file}), or rebuild the whole cache with: videoclf extract --rebuild"
            ) from None
        stored = handle.attrs.get("key")
        if stored is None or json.loads(stored) != self.key:
            handle.close()
            raise CacheError(
                f"Cache file {file} was written for another configuration (its key differs from this "
                f"config's {self.key}). Move it out of {self.path} or run: videoclf extract --rebuild"
            )
        return handle

    def index(self) -> dict[str, _Location]:
        """Where the newest entry of every cached video lives."""
        return _retry_vanished(self._index)

    def _index(self) -> dict[str, _Location]:
        found: dict[str, _Location] = {}
        for file in self.files():
            with self._open(file) as handle:
                videos = handle["video"].asstr()[:]
                sizes, mtimes = handle["size"][:], handle["mtime_ns"][:]
            for row, video in enumerate(videos):
                found[video] = _Location(file, row, int(sizes[row]), int(mtimes[row]))
        return found

    def missing(self, videos: list[VideoRef]) -> list[VideoRef]:
        """Videos with no entry, whose file changed since it was cached, or whose cached features are damaged
        (checksum mismatch or non-finite values: never fed to training, re-extracted instead)."""
        index = self.index()
        out = self.absent_or_stale(videos, index)
        outdated = {v.key for v in out}
        cached = [v for v in videos if v.key not in outdated]
        damaged = self.damaged([v.key for v in cached], index)
        if damaged:
            example = next(iter(damaged.items()))
            print(f"{len(damaged)} cached videos have damaged features and are extracted again "
                  f"(e.g. {example[0]}: {example[1]})", flush=True)
        return out + [v for v in cached if v.key in damaged]

    def absent_or_stale(self, videos: list[VideoRef], index: dict[str, _Location] | None = None) -> list[VideoRef]:
        """Videos with no entry, or whose file changed (size or mtime) since it was cached; reads no features."""
        index = self.index() if index is None else index
        return [v for v in videos if (loc := index.get(v.key)) is None or (loc.size, loc.mtime_ns) != (v.size, v.mtime_ns)]

    def damaged(self, keys: list[str], index: dict[str, _Location]) -> dict[str, str]:
        """Which cached ``keys`` fail their checksum or hold non-finite features, with the reason."""
        by_file: dict[Path, list[tuple[str, int]]] = {}
        for key in keys:
            by_file.setdefault(index[key].file, []).append((key, index[key].row))
        out: dict[str, str] = {}
        for file, rows in by_file.items():
            with self._open(file) as handle:
                dataset = handle["features"]
                rows.sort(key=lambda r: r[1])
                try:
                    blocks = dataset[[r for _, r in rows]]
                except OSError:  # a checksum failed somewhere: find which rows, one at a time
                    blocks = None
                for position, (key, row) in enumerate(rows):
                    try:
                        block = dataset[row] if blocks is None else blocks[position]
                    except OSError:
                        out[key] = f"checksum mismatch in {file.name}"
                        continue
                    if not np.isfinite(block).all():
                        out[key] = f"non-finite values in {file.name}"
        return out

    def read(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features (N, L, D), mask (N, L), n_frames (N,))`` for cached ``keys``, in order."""
        return _retry_vanished(lambda: self._read(keys))

    def _read(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self._index()
        absent = [k for k in keys if k not in index]
        if absent:
            raise CacheError(f"{len(absent)} videos are not in cache {self.path}, e.g. {absent[0]}. "
                             "Run: videoclf extract")
        return self._read_rows(keys, index)

    def _read_rows(self, keys: list[str], index: dict[str, _Location]):
        """Reads ``keys`` at their ``index`` locations, grouped by file, rows in file order."""
        features = np.zeros((len(keys), self.max_length, self.dim), self.dtype)
        mask = np.zeros((len(keys), self.max_length), bool)
        n_frames = np.zeros(len(keys), np.int64)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for out_row, key in enumerate(keys):
            loc = index[key]
            by_file.setdefault(loc.file, []).append((out_row, loc.row))
        for file, rows in by_file.items():
            with self._open(file) as handle:
                rows.sort(key=lambda r: r[1])
                src = [r for _, r in rows]
                dst = [o for o, _ in rows]
                try:
                    features[dst] = handle["features"][src]
                except OSError as exc:
                    raise CacheError(f"Cached features in {file} fail their checksum ({exc}). Run videoclf "
                                     "extract with the same config: damaged entries are extracted again.") from None
                mask[dst] = handle["mask"][src]
                n_frames[dst] = handle["n_frames"][src]
        if not np.isfinite(features).all():
            raise CacheError(f"Cached features in {self.path} hold non-finite values. Run videoclf extract with "
                             "the same config: damaged entries are extracted again.")
        return features, mask, n_frames

    # -- writing ---------------------------------------------------------
    def _write_file(self, target: Path, entries: list[Entry]) -> None:
        """Builds the HDF5 file in memory, then writes it with plain file I/O to a temporary name and renames it.

        HDF5 itself never writes to disk here: on a full disk or quota it leaves half-closed objects that
        crash the interpreter at exit, while a failed ``write`` is an ordinary, recoverable ``OSError``.
        """
        image = io.BytesIO()
        self._write_entries(image, entries)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(image.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:  # full disk, quota, read-only: the partial file goes, everything committed stays
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise CacheWriteError(target.parent, os_error_reason(exc)) from None

    def _write_entries(self, image: io.BytesIO, entries: list[Entry]) -> None:
        with h5py.File(image, "w") as handle:
            handle.attrs["key"] = json.dumps(self.key, sort_keys=True)
            handle.attrs["schema_version"] = SCHEMA_VERSION
            handle.attrs["written_by"] = json.dumps(_versions())
            handle.attrs["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            handle.create_dataset("video", data=[e.video.key for e in entries], dtype=h5py.string_dtype())
            handle.create_dataset("size", data=np.array([e.video.size for e in entries], np.int64))
            handle.create_dataset("mtime_ns", data=np.array([e.video.mtime_ns for e in entries], np.int64))
            handle.create_dataset("n_frames", data=np.array([e.n_frames for e in entries], np.int64))
            handle.create_dataset("mask", data=np.stack([e.mask for e in entries]))
            # One chunk per video, each with a Fletcher-32 checksum that h5py verifies on every read.
            handle.create_dataset(
                "features", data=np.stack([e.features for e in entries]).astype(self.dtype),
                chunks=(1, self.max_length, self.dim), fletcher32=True)

    def bytes_per_video(self) -> int:
        """Disk space one cached video takes (features, mask and bookkeeping), for space estimates."""
        return self.max_length * (self.dim * self.dtype.itemsize + 1) + 512

    def commit(self, entries: list[Entry]) -> None:
        """Durably adds entries (caller holds the lock): one new part file."""
        if not entries:
            return
        self._part_counter += 1
        name = f"part-{time.time_ns():020d}-{self.owner}-{os.getpid()}-{self._part_counter:06d}.h5"
        self._write_file(self.parts / name, entries)

    def compact(self) -> None:
        """Merges this writer's parts into its consolidated file (caller holds the lock); crash-safe by rename."""
        parts = self._own_parts()
        if not parts:
            return
        own = {self.consolidated, *parts}
        index = {k: loc for k, loc in self.index().items() if loc.file in own}
        keys = sorted(index)
        features, mask, n_frames = self._read_rows(keys, index)
        entries = [Entry(VideoRef(k, Path(k), index[k].size, index[k].mtime_ns), features[i], int(n_frames[i]),
                         mask[i]) for i, k in enumerate(keys)]
        self._write_file(self.consolidated, entries)
        for part in parts:
            part.unlink(missing_ok=True)

    def clear_stale_temporaries(self) -> None:
        """Removes ``*.tmp`` files a killed run of this writer left (caller holds the lock)."""
        for tmp in self.path.glob(f".{self.consolidated.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if self.parts.is_dir():
            for tmp in self.parts.glob(f".part-*-{self.owner}-*.tmp"):
                tmp.unlink(missing_ok=True)


class _Vanished(Exception):
    """A listed cache file was merged away by a concurrent writer: list again."""


def _retry_vanished(read, attempts: int = 20):
    # Writers write the merged file (atomic rename) before deleting parts, so a
    # fresh listing always holds every committed entry.
    for _ in range(attempts - 1):
        try:
            return read()
        except _Vanished:
            time.sleep(0.05)
    return read()


def _versions() -> dict[str, str]:
    return installed_versions(("videoclf", "h5py", "keras", "tensorflow", "opencv-python-headless"))
