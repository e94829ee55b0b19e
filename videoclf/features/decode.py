"""Decoding only the sampled frames of a video with OpenCV.

Memory stays flat in the video's length: frames are grabbed (decoded without
conversion) and only the sampled ones are retrieved, converted BGR → RGB and
resized. Container frame counts are often wrong, so the count that matters
is the one that decodes; if it differs from the metadata, a second pass
samples again with the true count. With a motion describer, each sampled
frame's successor is retrieved too (only it: every frame is grabbed anyway)
and the optical flow between them is the motion step there
(videoclf.features.motion).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from videoclf.errors import VideoError
from videoclf.features.views import PLAIN, View


@dataclass(frozen=True)
class DecodedClip:
    """The sampled RGB frames ``(m, S, S, 3)`` uint8 (None when only motion was asked for), the clip's real frame
    count and frame rate, and with a motion recipe the step descriptors ``(m, M)`` and which of them exist (a
    sampled frame with no successor has none)."""

    frames: np.ndarray | None
    n_frames: int
    fps: float
    motion: np.ndarray | None = None
    motion_valid: np.ndarray | None = None

    @property
    def count(self) -> int:
        """How many positions were sampled."""
        return len(self.frames) if self.frames is not None else len(self.motion)


def cropped(frame_bgr: np.ndarray, crop: str) -> np.ndarray:
    """The part of a decoded frame the models look at: all of it, or its centred square."""
    if crop == "center":
        height, width = frame_bgr.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return frame_bgr[top: top + side, left: left + side]
    return frame_bgr


def to_model_frame(frame_bgr: np.ndarray, image_size: int, crop: str) -> np.ndarray:
    """BGR decoder output → RGB square at ``image_size`` (squashed, or centre-cropped)."""
    frame = cv2.resize(cropped(frame_bgr, crop), (image_size, image_size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def shown(path: Path | str, limit: int = 240) -> str:
    """A path as error messages show it: whole, or its two ends around an ellipsis when very long."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2 - 10]}…{text[-(limit // 2 - 10):]} ({len(text)} chars)"


def check_video_file(path: Path) -> os.stat_result:
    """A regular, non-empty file, checked with ``stat`` alone: devices, FIFOs, sockets and folders are refused
    without being opened (a FIFO would block the decoder forever, ``/dev/zero`` never ends)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VideoError(f"{shown(path)}: file not found") from None
    except OSError as exc:  # name too long, permission denied, a loop of symlinks...
        raise VideoError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoError(f"{shown(path)}: is a folder, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise VideoError(f"{shown(path)}: not a regular file (a device, FIFO or socket); refused without opening it")
    if info.st_size == 0:
        raise VideoError(f"{shown(path)}: empty file (0 bytes)")
    return info


# One decoder thread per file: FFmpeg's frame threading spends more CPU per frame for less throughput
# (extract_speed.py; README "Measured"), CPU the model needs meanwhile.
# Parallelism comes from decoding several files at once instead (features.extract).
_ONE_THREAD = [cv2.CAP_PROP_N_THREADS, 1] if hasattr(cv2, "CAP_PROP_N_THREADS") else []


def _open(path: Path) -> cv2.VideoCapture:
    check_video_file(path)
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, _ONE_THREAD)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{shown(path)}: OpenCV cannot open it (corrupt file or unsupported codec)")
    return capture


@dataclass
class _Pass:
    """What one decode pass found: frames and motion steps at the wanted indices, and the decoded count."""

    frames: list
    motion: np.ndarray | None
    valid: np.ndarray
    decoded: int
    seen: np.ndarray  # which wanted indices were reached

    def complete(self) -> bool:
        return bool(self.seen.all())


def _sampled_pass(path: Path, wanted: np.ndarray, image_size: int, crop: str, motion=None,
                  frames: bool = True, view: View = PLAIN) -> _Pass:
    """One decode pass over every frame (grabbed, not converted); retrieves only the ``wanted`` frames and, with a
    ``motion`` describer (:class:`videoclf.features.motion.FlowDescriber`), each one's successor, whose flow from
    the wanted frame is the step descriptor there. Memory is flat: one small grey frame waits for its successor.
    Every retrieved frame is framed as ``view`` shows it (videoclf.features.views) before anything else."""
    wanted_set = {int(i): slot for slot, i in enumerate(wanted)}
    out = _Pass([None] * len(wanted), np.zeros((len(wanted), motion.size), np.float32) if motion else None,
                np.zeros(len(wanted), bool), 0, np.zeros(len(wanted), bool))
    waiting = None  # (slot, grey frame) of a wanted frame whose successor comes next
    capture = _open(path)
    try:
        index = 0
        while capture.grab():
            slot = wanted_set.get(index)
            if slot is not None or waiting is not None:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break  # undecodable frame: treat as the end of the clip
                frame = view.framed(frame)
                grey = motion.grey(cropped(frame, crop)) if motion is not None else None
                if waiting is not None:
                    out.motion[waiting[0]] = motion.describe(waiting[1], grey)
                    out.valid[waiting[0]] = True
                    waiting = None
                if slot is not None:
                    out.seen[slot] = True
                    if frames:
                        out.frames[slot] = to_model_frame(frame, image_size, crop)
                    if motion is not None:
                        waiting = (slot, grey)
            index += 1
    finally:
        capture.release()
    out.decoded = index
    return out


def _metadata(path: Path, default_fps: float = 25.0) -> tuple[int, float]:
    """The container's frame count and frame rate (``default_fps`` when it does not say)."""
    capture = _open(path)
    try:
        count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    return count, fps if fps > 0 else default_fps


def _two_passes(path: Path, plan, image_size: int, crop: str, motion, frames: bool, view: View = PLAIN):
    """Decodes what ``plan(n_frames, fps)`` asks for, ``(wanted, anything)``; ``n_frames`` is the container's count,
    and when that was wrong (or absent) the file is decoded again with the count that really decoded."""
    guess, fps = _metadata(path)
    planned = plan(guess, fps) if guess > 0 else (np.arange(0), None)
    found = _sampled_pass(path, planned[0], image_size, crop, motion, frames, view)
    if found.decoded == 0:
        raise VideoError(f"{shown(path)}: no frame could be decoded (truncated or corrupt)")
    if found.decoded != guess:
        decoded = found.decoded
        planned = plan(decoded, fps)
        found = _sampled_pass(path, planned[0], image_size, crop, motion, frames, view)
        if found.decoded != decoded or not found.complete():
            raise VideoError(f"{shown(path)}: decoding is not repeatable ({decoded} then {found.decoded} frames)")
    return found, planned, fps


def decode_sampled(path: str | Path, length: int, image_size: int, crop: str = "none", motion=None,
                   frames: bool = True, view: View = PLAIN) -> DecodedClip:
    """Decodes the ``length`` uniformly sampled frames of ``path`` (all, if the clip is shorter), and with a
    ``motion`` describer their step descriptors; ``frames=False`` skips the pictures (motion only). Another
    ``view`` picks its own frames and frames them its own way (videoclf.features.views).

    Raises VideoError (with the reason) for missing, empty, unreadable or frameless files.
    """
    path = Path(path)
    found, _, fps = _two_passes(path, lambda n, _: (view.indices(n, length), None), image_size, crop, motion, frames,
                                view)
    return DecodedClip(np.stack(found.frames) if frames else None, found.decoded, fps, found.motion,
                       found.valid if motion is not None else None)


@dataclass(frozen=True)
class ClipWindow:
    """One time window of a video: its span in frames and seconds, and its sampled RGB frames."""

    start_frame: int
    end_frame: int  # exclusive
    fps: float
    frames: np.ndarray
    motion: np.ndarray | None = None
    motion_valid: np.ndarray | None = None

    @property
    def start_seconds(self) -> float:
        return self.start_frame / self.fps

    @property
    def end_seconds(self) -> float:
        return self.end_frame / self.fps


def video_fps(path: str | Path) -> float:
    """The container's frame rate (25 when it does not say)."""
    return _metadata(Path(path))[1]


def window_spans(n_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame spans of length ``window`` every ``stride`` frames; the last one ends at the
    clip's end, so no frame is left out; a clip shorter than ``window`` is one span."""
    if n_frames <= window:
        return [(0, n_frames)]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return [(start, start + window) for start in starts]


def decode_windows(path: str | Path, window_seconds: float, stride_seconds: float, length: int, image_size: int,
                   crop: str = "none", motion=None, view: View = PLAIN) -> list[ClipWindow]:
    """Decodes each time window of ``path`` as a clip of its own (``length`` frames sampled uniformly inside it).

    One pass over the file whatever the number of windows (a second one only when the container's frame
    count was wrong, as in :func:`decode_sampled`).
    """
    path = Path(path)
    if window_seconds <= 0 or stride_seconds <= 0:
        raise VideoError(f"{shown(path)}: expected window and stride > 0 seconds. Received: {window_seconds}, "
                         f"{stride_seconds}")

    def plan(n_frames: int, fps: float):
        window, stride = max(1, round(window_seconds * fps)), max(1, round(stride_seconds * fps))
        spans = window_spans(n_frames, window, stride)
        picks = [start + view.indices(end - start, length) for start, end in spans]
        return np.unique(np.concatenate(picks)), (spans, picks)

    found, (wanted, (spans, picks)), fps = _two_passes(path, plan, image_size, crop, motion, True, view)
    slot = {int(index): position for position, index in enumerate(wanted)}
    out = []
    for (start, end), pick in zip(spans, picks):
        rows = [slot[i] for i in pick.tolist()]
        out.append(ClipWindow(start, end, fps, np.stack([found.frames[r] for r in rows]),
                              None if motion is None else found.motion[rows],
                              None if motion is None else found.valid[rows]))
    return out
