"""The HDF5 feature cache: one folder per key, crash-safe, shared by processes.

Layout of ``features_cache/<slug>/``:

- ``features.h5``: entries consolidated from earlier runs;
- ``parts/*.h5``: entries committed since, one small file per model batch,
  written to a temporary name and renamed, so ``kill -9`` loses at most the
  videos in flight and never leaves a half-written file under a real name;
- ``.lock``: held by the one process that extracts into (or compacts) the cache;
- ``bad_videos.csv``: the videos that could not be decoded, with reasons and the file looked at (merged across
  splits and runs).

A shard writer (``extract --shard I/N``) owns ``features.shard-I-of-N.h5``, its
own parts, ``.lock.shard-I-of-N`` and ``bad_videos.shard-I-of-N.csv``, so N
processes or machines fill one cache side by side; readers see the union of
every file, nothing is copied between them.

Each further view of ``sampling.views`` (videoclf.features.views) is a cache of
its own, its recipe in the key and ``-v<k>`` in the folder's name; view 0 is
the plain cache, unchanged.

The motion stream (``motion.enabled``) is a cache of its own kind beside the
appearance ones, ``features_cache/motion-<algorithm>-w<width>-L<len>-<hash>/``,
keyed by what changes the flow descriptors (algorithm, preset, frame width,
grid, descriptor version, crop, sampling rule, length), with the same files and
guarantees; its ``features`` are the step descriptors and its ``mask`` says
which steps exist (a sampled frame with a successor).

Every HDF5 file holds the same datasets, one row per video: ``video`` (the
file's path, its data folder resolved: a row belongs to one file, so two data
folders with the same file names never share, evict or mislabel rows; files of
schema 2 and before hold paths relative to the data folder, and the folder that
reads them adopts them until its next merge writes them with its path),
``size`` and ``mtime_ns`` (to notice a changed file), ``n_frames`` (frames
that really decoded), ``mask`` (positions holding real frames), ``features`` ``(N, max_seq_length, dim)`` (a Fletcher-32
checksum per row) and ``digest`` (16 bytes a row over all of the above).
Attributes record the full key and the versions that wrote it. Later files
win over earlier ones, so a re-extracted video supersedes its stale entry.

Every row is verified when read (checksum, digest, and the invariants of
:meth:`FeatureCache.row_problem`): a damaged row is never handed to training;
``extract`` and ``tune`` name it, count it and extract it again.
"""

from __future__ import annotations

import contextlib
import csv
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

from videoclf.config import Config
from videoclf.console import plural
from videoclf.data.videos import VideoRef
from videoclf.errors import CacheError
from videoclf.features.backbones import FEATURE_DIMS, WeightsSource
from videoclf.features.motion import DESCRIPTOR_VERSION, descriptor_size
from videoclf.features.sample import SAMPLING_RULE
from videoclf.features.views import PLAIN, View
from videoclf.versions import installed_versions

SCHEMA_VERSION = 3  # 3: rows named by resolved path; 2: a per-row digest (1: checked by checksum and invariants)
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


class DamagedRows(CacheError):
    """Cached rows failed their checks while read (``damaged``: video key → reason); never handed to training."""

    def __init__(self, path: Path, damaged: dict[str, str]):
        self.path, self.damaged = path, dict(damaged)
        key, reason = next(iter(damaged.items()))
        super().__init__(f"{path} holds {plural(len(damaged), 'damaged video')} (e.g. {key}: {reason}). Run "
                         "videoclf extract (or tune) with the same config: damaged entries are extracted again.")

    def summary(self) -> str:
        """The damage in one console line: how many, which, why."""
        shown = "; ".join(f"{key}: {reason}" for key, reason in list(self.damaged.items())[:3])
        more = f"; and {len(self.damaged) - 3} more" if len(self.damaged) > 3 else ""
        return f"{self.path}: {plural(len(self.damaged), 'cached video')} damaged ({shown}{more})"


class DamagedFile(CacheError):
    """A cache file whose video names or file stamps cannot be read: none of its rows can be told apart. A writer
    sets it aside (``<name>.damaged-<time>``) and extracts its videos again."""

    def __init__(self, file: Path, reason: str):
        self.file, self.reason = file, reason
        super().__init__(f"Cache file {file} is damaged ({reason}): the videos it holds cannot be named. Run "
                         "videoclf extract (or tune) with the same config: the file is set aside and those videos "
                         "are extracted again.")


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
    name: str  # the row's ``video`` as stored (its digest covers it)


def cache_slug(key: dict) -> str:
    """Folder name: readable prefix plus a hash of the full key (``-v<k>`` for view k of ``sampling.views``)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    view = f"-v{key['view']['index']}" if "view" in key else ""
    if key.get("stream") == "motion":
        return f"motion-{key['algorithm']}-w{key['frame_width']}-L{key['max_seq_length']}{view}-{digest}"
    return f"{key['extractor']}-{key['image_size']}px-L{key['max_seq_length']}{view}-{digest}"


class FeatureCache:
    """Reads and appends cached features for one key (see module docstring)."""

    def __init__(self, root: str | Path, key: dict, dim: int, dtype: str = "float16",
                 shard: tuple[int, int] | None = None, data_root: str | Path | None = None):
        self.key = dict(key)
        # the data folder this cache serves, resolved: video keys are relative to it (None: keys are whole names)
        self.folder = os.path.realpath(data_root) if data_root is not None else None
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
    def identity(self, key: str) -> str:
        """The name a video's row is stored under: its path with the data folder resolved."""
        return key if self.folder is None or os.path.isabs(key) else f"{self.folder}/{key}"

    def _key_of(self, identity: str) -> str:
        """A stored name as this folder's video key (relative when the file is in the folder)."""
        inside = self.folder is not None and identity.startswith(self.folder + "/")
        return identity[len(self.folder) + 1:] if inside else identity

    def bad_videos(self) -> dict[str, str]:
        """Video key → reason, from every writer's ``bad_videos*.csv`` (videos extraction skipped), for the files
        of this data folder (a row without a ``path``, written before rows named their file, counts for any)."""
        bad: dict[str, str] = {}
        for report in sorted(self.path.glob("bad_videos*.csv")):
            with report.open(newline="") as fh:
                bad.update({row["video"]: row["reason"] for row in csv.DictReader(fh) if row.get("video")
                            and row.get("path") in (None, "", self.identity(row["video"]))})
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
        """Where the newest entry of every cached video lives, by this folder's video keys."""
        return _retry_vanished(self._index)

    def _index(self) -> dict[str, _Location]:
        return {self._key_of(identity): loc for identity, loc in self._rows().items()}

    def _rows(self) -> dict[str, _Location]:
        """Every file's newest row, by stored identity (a schema-2 row's relative name adopted by this folder)."""
        found: dict[str, _Location] = {}
        for file in self.files():
            with self._open(file) as handle:
                videos, sizes, mtimes = _names_and_stamps(file, handle)
            for row, video in enumerate(videos):
                found[self.identity(video)] = _Location(file, row, int(sizes[row]), int(mtimes[row]), video)
        return found

    def _legacy(self, file: Path) -> bool:
        """Whether ``file`` names its rows relative to a data folder (schema 2 and before)."""
        with self._open(file) as handle:
            return int(handle.attrs.get("schema_version", 1)) < 3

    def missing(self, videos: list[VideoRef], verify: bool = True) -> list[VideoRef]:
        """Videos to extract: no entry, a file changed since it was cached, or (``verify``: every cached row is read
        and checked) a damaged entry (see :meth:`row_problem`: never fed to training, extracted again). Says on the
        console what it found. ``tune`` verifies while it loads the rows instead, reading them once. A file whose
        video names cannot be read is set aside first (the caller holds the lock): its videos count as new."""
        index = self._index_setting_aside()
        new = [v for v in videos if v.key not in index]
        changed = [v for v in self.absent_or_stale(videos, index) if v.key in index]
        outdated = {v.key for v in new + changed}
        cached = [v for v in videos if v.key not in outdated]
        damaged = self.damaged([v.key for v in cached], index) if verify else {}
        if changed:
            print(f"{self.path}: {plural(len(changed), 'cached video')} changed on disk since "
                  f"(e.g. {changed[0].key}): extracting again", flush=True)
        if damaged:
            print(f"{DamagedRows(self.path, damaged).summary()}: extracting again", flush=True)
        return new + changed + [v for v in cached if v.key in damaged]

    def _index_setting_aside(self) -> dict[str, _Location]:
        """The index, after setting aside every file whose names cannot be read (caller holds the lock)."""
        while True:
            try:
                return self.index()
            except DamagedFile as damage:
                aside = damage.file.with_name(f"{damage.file.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
                try:
                    os.replace(damage.file, aside)
                except OSError as exc:
                    raise CacheWriteError(self.path, os_error_reason(exc)) from None
                print(f"{damage.file}: damaged ({damage.reason}); set aside as {aside.name}, its videos are "
                      "extracted again", flush=True)

    def absent_or_stale(self, videos: list[VideoRef], index: dict[str, _Location] | None = None) -> list[VideoRef]:
        """Videos with no entry, or whose file changed (size or mtime) since it was cached; reads no features."""
        index = self.index() if index is None else index
        return [v for v in videos if (loc := index.get(v.key)) is None or (loc.size, loc.mtime_ns) != (v.size, v.mtime_ns)]

    def damaged(self, keys: list[str], index: dict[str, _Location]) -> dict[str, str]:
        """Which cached ``keys`` are damaged, with the reason (every dataset of the row is checked)."""
        return self._read_rows(keys, index)[3]

    def read(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features (N, L, D), mask (N, L), n_frames (N,))`` for cached ``keys``, in order, every row verified."""
        return _retry_vanished(lambda: self._read(keys))

    def _read(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self._index()
        absent = [k for k in keys if k not in index]
        if absent:
            raise CacheError(f"{plural(len(absent), 'video')} not in cache {self.path}, e.g. {absent[0]}. "
                             "Run: videoclf extract")
        features, mask, n_frames, damaged = self._read_rows(keys, index)
        if damaged:
            raise DamagedRows(self.path, damaged)
        return features, mask, n_frames

    def _read_rows(self, keys: list[str], index: dict[str, _Location]):
        """Reads ``keys`` at their ``index`` locations, grouped by file, rows in file order, and checks each row:
        ``(features, mask, n_frames, damaged)``; a damaged row's reason is in ``damaged`` and its arrays are zero."""
        features = np.zeros((len(keys), self.max_length, self.dim), self.dtype)
        mask = np.zeros((len(keys), self.max_length), bool)
        n_frames = np.zeros(len(keys), np.int64)
        damaged: dict[str, str] = {}
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for out_row, key in enumerate(keys):
            loc = index[key]
            by_file.setdefault(loc.file, []).append((out_row, loc.row))
        for file, rows in by_file.items():
            rows.sort(key=lambda r: r[1])
            with self._open(file) as handle:
                stored = _StoredRows(handle, [r for _, r in rows])
            for position, (out_row, _) in enumerate(rows):
                key = keys[out_row]
                problem = stored.problem(position, index[key], self)
                if problem:
                    damaged[key] = f"{problem} in {file.name}"
                    continue
                features[out_row], mask[out_row], n_frames[out_row] = (
                    stored.features[position], stored.mask[position], stored.n_frames[position])
        return features, mask, n_frames, damaged

    def row_problem(self, features: np.ndarray, mask: np.ndarray, n_frames: int) -> str | None:
        """What is wrong with a row whose bytes were read back, by the cache's invariants; None when it is sound.

        Appearance rows hold ``min(n_frames, L)`` sampled frames in the first positions; motion rows have steps only
        where a sampled frame is; padding is zero; every value is finite.
        """
        sampled = min(int(n_frames), self.max_length)
        if n_frames < 1:
            return f"n_frames is {int(n_frames)}"
        if not np.isfinite(features).all():
            return "non-finite values"
        if self.key.get("stream") == "motion":
            if mask[sampled:].any():
                return f"motion steps past the {sampled} sampled frames"
        elif mask.sum() != sampled or not mask[:sampled].all():
            return f"the mask holds {int(mask.sum())} frames where n_frames={int(n_frames)} says {sampled}"
        if np.any(features[~mask]):
            return "values in padding"
        return None

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
            names = [self.identity(e.video.key) for e in entries]
            handle.create_dataset("video", data=names, dtype=h5py.string_dtype())
            handle.create_dataset("size", data=np.array([e.video.size for e in entries], np.int64))
            handle.create_dataset("mtime_ns", data=np.array([e.video.mtime_ns for e in entries], np.int64))
            handle.create_dataset("n_frames", data=np.array([e.n_frames for e in entries], np.int64))
            mask = np.stack([e.mask for e in entries]).astype(bool)
            handle.create_dataset("mask", data=mask)
            features = np.stack([e.features for e in entries]).astype(self.dtype)
            # One chunk per video, each with a Fletcher-32 checksum that h5py verifies on every read.
            handle.create_dataset("features", data=features, chunks=(1, self.max_length, self.dim), fletcher32=True)
            # And one digest per row over everything else it holds (key, size, mtime, n_frames, mask, features).
            handle.create_dataset("digest", data=np.stack([
                row_digest(names[i], e.video.size, e.video.mtime_ns, e.n_frames, mask[i], features[i])
                for i, e in enumerate(entries)]))

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
        """Merges this writer's parts into its consolidated file (caller holds the lock); crash-safe by rename. A
        consolidated file of schema 2 is written again too: its rows then name this data folder."""
        parts = self._own_parts()
        legacy = self.folder is not None and self.consolidated.is_file() and self._legacy(self.consolidated)
        if not parts and not legacy:
            return
        if legacy:
            print(f"{self.consolidated}: written before rows named their data folder; writing it again with "
                  f"{self.folder} (once)", flush=True)
        own = {self.consolidated, *parts}
        index = {k: loc for k, loc in _retry_vanished(self._rows).items() if loc.file in own}
        keys = sorted(index)
        features, mask, n_frames, damaged = self._read_rows(keys, index)
        # a damaged row is left out: the next extract finds it missing and extracts it again
        entries = [Entry(VideoRef(k, Path(k), index[k].size, index[k].mtime_ns), features[i], int(n_frames[i]),
                         mask[i]) for i, k in enumerate(keys) if k not in damaged]
        if entries:
            self._write_file(self.consolidated, entries)
        else:
            self.consolidated.unlink(missing_ok=True)
        for part in parts:
            part.unlink(missing_ok=True)

    def write_bad_report(self, requested: list[VideoRef], bad: dict[str, str]) -> None:
        """Merges this run's reasons into ``bad_videos.csv`` by video file: the other splits', runs' and data
        folders' reasons stay; a requested video that decodes now leaves the list (caller holds the lock). Each
        row names the file it looked at (``path``, its data folder resolved: the key is relative to it)."""
        asked = {v.key: self.identity(v.key) for v in requested}
        kept: dict[tuple[str, str], str] = {}  # (video, path) -> reason: two data folders keep their own rows
        if self.report.is_file():
            with self.report.open(newline="") as fh:
                kept = {(row["video"], row.get("path") or ""): row["reason"] for row in csv.DictReader(fh)
                        if row.get("video") and (row["video"] not in asked
                                                 or row.get("path") not in ("", None, asked[row["video"]]))}
        kept.update({(key, asked.get(key, self.identity(key))): reason for key, reason in bad.items()})
        temporary = self.report.with_suffix(".csv.tmp")
        try:
            with temporary.open("w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["video", "reason", "path"])
                writer.writerows((key, reason, path) for (key, path), reason in sorted(kept.items()))
            temporary.replace(self.report)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise CacheWriteError(self.path, os_error_reason(exc)) from None

    def clear(self) -> None:
        """Removes every cached entry (all writers' files and parts; the bad-video reports stay) under the lock."""
        import shutil

        with self.locked():
            shutil.rmtree(self.parts, ignore_errors=True)
            for file in self.path.glob("*.h5"):
                file.unlink()

    def clear_stale_temporaries(self) -> None:
        """Removes ``*.tmp`` files a killed run of this writer left (caller holds the lock)."""
        for tmp in self.path.glob(f".{self.consolidated.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if self.parts.is_dir():
            for tmp in self.parts.glob(f".part-*-{self.owner}-*.tmp"):
                tmp.unlink(missing_ok=True)


def _names_and_stamps(file: Path, handle: h5py.File) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A file's ``video``, ``size`` and ``mtime_ns`` datasets, or :class:`DamagedFile` when they cannot be read
    (HDF5 cannot follow a damaged name's reference, a name is not UTF-8) or do not match the rows."""
    try:
        videos = handle["video"].asstr()[:]
        sizes, mtimes = handle["size"][:], handle["mtime_ns"][:]
        rows = handle["features"].shape[0]
    except (OSError, KeyError, UnicodeDecodeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DamagedFile(file, f"its video names or file stamps cannot be read: {reason}") from None
    if not len(videos) == len(sizes) == len(mtimes) == rows:
        raise DamagedFile(file, f"{len(videos)} names, {len(sizes)} sizes, {len(mtimes)} times for {rows} rows")
    return videos, sizes, mtimes


def row_digest(key: str, size: int, mtime_ns: int, n_frames: int, mask: np.ndarray, features: np.ndarray) -> np.ndarray:
    """16 bytes identifying a row's whole content as stored (features in the cache's dtype)."""
    digest = hashlib.blake2b(key.encode(), digest_size=16)
    digest.update(np.array([size, mtime_ns, n_frames], np.int64).tobytes())
    digest.update(np.ascontiguousarray(mask, bool).tobytes())
    digest.update(np.ascontiguousarray(features).tobytes())
    return np.frombuffer(digest.digest(), np.uint8)


class _StoredRows:
    """One file's datasets at some rows (sorted), read together; a row whose features fail their Fletcher-32
    checksum is found by reading the rows one at a time."""

    def __init__(self, handle: h5py.File, rows: list[int]):
        data = handle["features"]
        self.unreadable: set[int] = set()
        try:
            self.features = data[rows]
        except OSError:
            self.features = np.zeros((len(rows), *data.shape[1:]), data.dtype)
            for position, row in enumerate(rows):
                try:
                    self.features[position] = data[row]
                except OSError:
                    self.unreadable.add(position)
        self.mask = handle["mask"][rows].astype(bool)
        self.n_frames = handle["n_frames"][rows]
        self.digests = handle["digest"][rows] if "digest" in handle else None  # schema 1 files have none

    def problem(self, position: int, location: _Location, cache: FeatureCache) -> str | None:
        """Why the row at ``position`` cannot be trusted (checksum, invariants, digest), or None."""
        if position in self.unreadable:
            return "features fail their checksum"
        features, mask, n_frames = self.features[position], self.mask[position], self.n_frames[position]
        problem = cache.row_problem(features, mask, n_frames)
        if problem is None and self.digests is not None and not np.array_equal(
                row_digest(location.name, location.size, location.mtime_ns, int(n_frames), mask, features),
                self.digests[position]):
            problem = "contents do not match their digest"
        return problem


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


# -- which caches a config reads ------------------------------------------------
MOTION_DTYPE = "float32"  # 36 numbers a step: small, and flow rates of 1e-3 frame widths need the digits


def cache_key(config: Config, weights: WeightsSource, view: View = PLAIN) -> dict:
    """Everything that changes the features, and nothing else (float32 keys are as before precision existed, the
    plain view's as before views existed)."""
    precision = {"precision": config.extractor.precision} if config.extractor.precision != "float32" else {}
    return {**precision, **view.key(),
        "extractor": config.extractor.name,
        "weights": weights.kind,
        "weights_digest": weights.digest,
        "image_size": config.sampling.image_size,
        "crop": config.sampling.crop,
        "sampling_rule": SAMPLING_RULE,
        "max_seq_length": config.sampling.max_seq_length,
        "dtype": config.cache.dtype,
        "colour": "RGB",
    }


def open_cache(config: Config, weights: WeightsSource, shard: tuple[int, int] | None = None,
               view: View = PLAIN) -> FeatureCache:
    return FeatureCache(config.cache.dir, cache_key(config, weights, view), FEATURE_DIMS[config.extractor.name],
                        config.cache.dtype, shard, config.data.root)


def motion_cache_key(config: Config, view: View = PLAIN) -> dict:
    """Everything that changes the motion stream, and nothing else (no extractor: turning motion on for an
    existing appearance cache runs no CNN, and changing the CNN keeps the motion stream)."""
    motion = config.motion
    return {**view.key(), "stream": "motion", "algorithm": motion.algorithm,
            **({"preset": motion.preset} if motion.algorithm == "dis" else {}),
            "frame_width": motion.frame_width, "grid": motion.grid, "descriptor_version": DESCRIPTOR_VERSION,
            "crop": config.sampling.crop, "sampling_rule": SAMPLING_RULE,
            "max_seq_length": config.sampling.max_seq_length, "dtype": MOTION_DTYPE}


def open_motion_cache(config: Config, shard: tuple[int, int] | None = None,
                      view: View = PLAIN) -> FeatureCache | None:
    """The motion stream's cache, or None when ``motion.enabled`` is off."""
    if not config.motion.enabled:
        return None
    return FeatureCache(config.cache.dir, motion_cache_key(config, view), descriptor_size(config.motion.grid),
                        MOTION_DTYPE, shard, config.data.root)

