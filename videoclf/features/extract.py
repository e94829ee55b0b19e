"""Fills the feature cache: decode (in threads) → fixed-shape batches → one compiled model.

Decoding and the model share the cores in turns (or decoding runs ahead of
a model on a GPU); frames from several videos share a batch, so the model
always sees the same shape.
Completed videos are committed after every batch, so an interrupted run
keeps what it finished. The model is built only if something is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from videoclf.config import Config
from videoclf.data.videos import VideoRef, allowance, too_many_bad
from videoclf.errors import CacheError, DataError, VideoError
from videoclf.features.cache import CacheWriteError, Entry, FeatureCache, open_cache, open_motion_cache
from videoclf.features.decode import DecodedClip, decode_sampled
from videoclf.features.encode import ClipEncoder, EncodedClip
from videoclf.features.backbones import WeightsSource
from videoclf.features.runtime import build_frame_model, choose_runtime, gpu_present, runtime_cache_dir
from videoclf.features.motion import FlowDescriber
from videoclf.features.views import PLAIN, View, views

MOTION_COMMIT = 32  # motion rows committed together (motion alone runs no model batches)
DECODE_LOOKAHEAD = 8  # videos decoded before the model needs them; bounds memory
GPU_DECODE_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))  # decoding beside a model on the GPU


@dataclass
class ExtractReport:
    """What one extraction run did; ``bad`` maps video key → reason."""

    cache_path: Path
    requested: int
    bad_report: Path | None = None
    extracted: int = 0
    frames: int = 0
    seconds: float = 0.0
    model_build_seconds: float = 0.0
    bad: dict[str, str] = field(default_factory=dict)
    motion_extracted: int = 0
    views: int = 1  # how many cached views of each video it filled (sampling.views)

    def joined(self, other: "ExtractReport") -> "ExtractReport":
        """This view's report and another view's of the same videos: their work added, their bad videos merged."""
        return ExtractReport(self.cache_path, self.requested, self.bad_report, self.extracted + other.extracted,
                             self.frames + other.frames, self.seconds + other.seconds,
                             self.model_build_seconds + other.model_build_seconds, {**other.bad, **self.bad},
                             self.motion_extracted + other.motion_extracted, self.views + other.views)

    @property
    def frames_per_second(self) -> float:
        """Throughput once the model is built (the seed loop's timing excludes its build too)."""
        busy = self.seconds - self.model_build_seconds
        return self.frames / busy if busy > 0 else 0.0


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Deterministic shard membership by a hash of the video key (stable as CSVs grow)."""
    index, count = shard
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % count == index


@dataclass(frozen=True)
class _Job:
    """One video to decode, and which streams it still needs."""

    video: VideoRef
    frames: bool
    motion: bool
    view: View = PLAIN


def _decode(job: _Job, config: Config) -> DecodedClip | VideoError:
    video = job.video
    try:
        return decode_sampled(video.path, config.sampling.max_seq_length, config.sampling.image_size,
                              config.sampling.crop, FlowDescriber.from_config(config.motion) if job.motion else None,
                              frames=job.frames, view=job.view)
    except VideoError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a decoder crash on one file must not stop the run
        return VideoError(f"{video.path}: {type(exc).__name__}: {exc}")


class _Committer:
    """Feeds decoded clips to the shared :class:`ClipEncoder` and commits each finished batch of clips."""

    def __init__(self, model, cache: FeatureCache, report: ExtractReport, bar):
        self.encoder = ClipEncoder(model, cache.max_length)
        self.cache, self.report, self.bar = cache, report, bar

    def add(self, video: VideoRef, clip: DecodedClip) -> None:
        self._commit(self.encoder.add((video, clip.n_frames), clip.frames))

    def flush(self) -> None:
        self._commit(self.encoder.flush())

    def _commit(self, finished: list[EncodedClip]) -> None:
        self.report.frames = self.encoder.frames_done
        if not finished:
            return
        self.cache.commit([Entry(c.key[0], c.features, c.key[1], c.mask) for c in finished])
        self.report.extracted += len(finished)
        self.bar.update(len(finished))


def extract_videos(config: Config, videos: list[VideoRef], weights: WeightsSource, progress: bool = True,
                   shard: tuple[int, int] | None = None, verify: bool = True,
                   again: frozenset[str] = frozenset()) -> ExtractReport:
    """Extracts every video of ``videos`` (of ``shard`` I/N, if given) not yet cached, in every enabled stream.

    A video whose appearance features are cached but whose motion stream is not is decoded for motion only:
    the CNN never runs for it. ``verify`` reads and checks every cached row (``tune`` checks them while loading
    instead, and names the damaged ones in ``again``, extracted in every stream whatever the cache says). Bad
    videos are listed in ``bad_videos.csv`` and skipped; raises DataError
    only when no video is usable or more than ``cache.max_bad_fraction`` are bad. Each view of
    ``sampling.views`` is filled in turn, into its own caches.
    """
    if shard:
        videos = [v for v in videos if in_shard(v.key, shard)]
    model = _FrameModel(config, weights)
    reports = [_extract_view(config, videos, model, progress, shard, verify, again, each)
               for each in views(config.sampling.views)]
    report = reports[0]
    for other in reports[1:]:
        report = report.joined(other)
    if videos and report.bad and too_many_bad(len(report.bad), len(videos), config.cache.max_bad_fraction):
        raise DataError(
            f"{len(report.bad)} of {len(videos)} videos could not be decoded (cache.max_bad_fraction="
            f"{config.cache.max_bad_fraction:g}): " + "; ".join(f"{key} ({why})" for key, why in report.bad.items())
            + f". Replace or remove them (their reasons are also in {report.bad_report})"
            + allowance(len(report.bad), len(videos)))
    return report


class _FrameModel:
    """The frame extractor, built when a first video needs it and shared by every view of one run."""

    def __init__(self, config: Config, weights: WeightsSource):
        self.config, self.weights, self.model = config, weights, None

    def get(self, report: ExtractReport):
        if self.model is None:
            built = time.perf_counter()
            self.model = build_frame_model(self.config.extractor, self.config.sampling, self.weights,
                                           runtime_cache_dir())
            report.model_build_seconds = time.perf_counter() - built
        return self.model


def _extract_view(config: Config, videos: list[VideoRef], frame_model: _FrameModel, progress: bool,
                  shard: tuple[int, int] | None, verify: bool, again: frozenset[str], view: View) -> ExtractReport:
    """One view's caches filled (every stream), as :func:`extract_videos` describes."""
    weights = frame_model.weights
    cache = open_cache(config, weights, shard, view)
    motion_cache = open_motion_cache(config, shard, view)
    caches = [c for c in (cache, motion_cache) if c is not None]
    report = ExtractReport(cache.path, len(videos), cache.report)
    with contextlib.ExitStack() as held:
        for each in caches:
            held.enter_context(each.locked("waiting for another extract process to finish"))
            each.clear_stale_temporaries()
        todo = {v.key for v in cache.missing(videos, verify)} | set(again)
        motion_todo = {v.key for v in motion_cache.missing(videos, verify)} | set(again) if motion_cache else set()
        jobs = [_Job(v, v.key in todo, v.key in motion_todo, view) for v in videos if v.key in todo | motion_todo]
        try:
            if jobs:
                _check_space(cache, len(todo))
                _run(config, frame_model, cache, motion_cache, jobs, report, progress)
            for each in caches:
                each.compact()  # also merges parts an earlier run left when its merge failed
                each.write_bad_report(videos, report.bad)
        except CacheWriteError as exc:
            left = len(jobs) - report.extracted - len(report.bad)
            raise CacheError(f"{exc} Extracted and kept: {report.extracted} videos; left to extract: {left}; the "
                             f"rest of the work needs about {_megabytes(_space_needed(cache, left))} MB (parts, "
                             f"then their merge into {cache.consolidated.name}); "
                             f"{_megabytes(_free_bytes(cache.path))} MB are free there now.") from None
    return report


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f}"


def _space_needed(cache: FeatureCache, n_new: int) -> int:
    """Bytes to extract ``n_new`` more videos: their parts, then one merged file of every entry beside the old."""
    return cache.bytes_per_video() * (2 * n_new + len(cache.index()))


def _check_space(cache: FeatureCache, n_videos: int) -> None:
    """Refuses to start when the cache folder obviously cannot hold the result (parts, then their merge)."""
    needed, free = _space_needed(cache, n_videos), _free_bytes(cache.path)
    if needed > free:
        raise CacheError(f"Not enough space for the feature cache in {cache.path}: {n_videos} videos need about "
                         f"{_megabytes(needed)} MB, {_megabytes(free)} MB are free. Make room or set cache.dir to "
                         "another folder (e.g. --set cache.dir=/scratch/features_cache).")


def extract_split(config: Config, split: str, weights: WeightsSource, progress: bool = True,
                  verify: bool = True) -> ExtractReport:
    """Extracts what is missing of one split of the config (``train`` / ``test``)."""
    from videoclf.data.videos import split_videos

    return extract_videos(config, split_videos(config, split)[0], weights, progress=progress, verify=verify)


class _MotionCommitter:
    """Commits motion rows to their cache in small batches (no model: they are final once decoded)."""

    def __init__(self, cache: FeatureCache | None, report: ExtractReport):
        self.cache, self.report, self.waiting = cache, report, []

    def add(self, video: VideoRef, clip: DecodedClip) -> None:
        length = self.cache.max_length
        steps = np.zeros((length, self.cache.dim), np.float32)
        valid = np.zeros(length, bool)
        steps[: len(clip.motion)], valid[: len(clip.motion)] = clip.motion, clip.motion_valid
        self.waiting.append(Entry(video, steps, clip.n_frames, valid))
        if len(self.waiting) >= MOTION_COMMIT:
            self.flush()

    def flush(self) -> None:
        if self.waiting:
            self.cache.commit(self.waiting)
            self.report.motion_extracted += len(self.waiting)
            self.waiting = []


def _run(config, frame_model: _FrameModel, cache, motion_cache, jobs: list[_Job], report, progress) -> None:
    """Decode → model → commit. Where the model runs on the CPU, decoding and the model take turns, each on
    all cores (a chunk of ``DECODE_LOOKAHEAD`` videos decoded in parallel, then their frames through the
    model): side by side, the decode thread would take a core from the model's threads, which then wait on
    each other (in turns: nearly all the cores allow; README "Measured", extract_speed.py). Beside a model on a GPU,
    decoding runs ahead in a few threads instead. Motion steps are computed while decoding (in the same
    threads) and committed as they come; a job that needs no frames never reaches the model."""
    started = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="video", desc=f"extract {_streams_label(jobs, config)}", disable=not progress,
               dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 10.0)
    beside_gpu = choose_runtime(config.extractor.runtime, config.extractor.precision) == "tensorflow" and gpu_present()
    threads = GPU_DECODE_THREADS if beside_gpu else os.cpu_count() or 1
    motion = _MotionCommitter(motion_cache, report)
    opencv_threads = cv2.getNumThreads()
    # files are decoded in parallel, one per core: OpenCV's own threads inside each (resizing, optical flow) would
    # only add overhead (motion costs less CPU a frame with one: README "Measured", extract_speed.py)
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
            pending, queue, committer = iter(jobs), deque(), None
            while True:
                if beside_gpu or not queue:  # keep decoding ahead; or decode the next chunk, the model waiting
                    for job in itertools.islice(pending, DECODE_LOOKAHEAD - len(queue)):
                        queue.append((job, pool.submit(_decode, job, config)))
                    if not beside_gpu and committer is not None:  # (the first chunk decodes while it is built)
                        wait([future for _, future in queue])
                if not queue:
                    break
                job, future = queue.popleft()
                result = future.result()
                if isinstance(result, VideoError):
                    report.bad[job.video.key] = str(result)
                    bar.update(1)
                    continue
                if job.motion:
                    motion.add(job.video, result)
                if not job.frames:
                    bar.update(1)
                    continue
                if committer is None:
                    # a first LiteRT run converts (int8: calibrates) the extractor: seconds with no video done
                    bar.set_postfix_str("preparing the extractor", refresh=True)
                    committer = _Committer(frame_model.get(report), cache, report, bar)
                committer.add(job.video, result)
                elapsed = time.perf_counter() - started
                bar.set_postfix(frames_s=f"{report.frames / elapsed:.1f}" if elapsed else "-", refresh=False)
            if committer is not None:
                committer.flush()
            motion.flush()
    finally:
        cv2.setNumThreads(opencv_threads)
        bar.close()
        report.seconds = time.perf_counter() - started


def _streams_label(jobs: list[_Job], config: Config) -> str:
    """What the bar extracts: the CNN's name, ``+ motion``, or ``motion`` alone; and which view, when several."""
    frames, motion = any(j.frames for j in jobs), any(j.motion for j in jobs)
    label = " + ".join(([config.extractor.name] if frames else []) + (["motion"] if motion else []))
    count = config.sampling.views
    return f"{label}, view {jobs[0].view.index + 1}/{count}" if count > 1 and jobs else label
