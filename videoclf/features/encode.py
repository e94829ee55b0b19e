"""Sampled frames of successive clips → per-clip feature sequences, through the frame model's fixed batches.

The one frame-feature path: extraction (which commits each finished clip to
the cache) and the registered model's inference both go through it, so a
video gets the same features in training and in prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from videoclf.features.runtime import FrameModel


@dataclass
class EncodedClip:
    """One clip's features ``(length, dim)``: rows past ``count`` (the sampled frames) are zero padding."""

    key: Any  # whatever the caller named the clip with
    features: np.ndarray
    count: int
    _waiting: int = 0  # frames still in the model's queue

    @property
    def mask(self) -> np.ndarray:
        mask = np.zeros(len(self.features), bool)
        mask[: self.count] = True
        return mask


class ClipEncoder:
    """Packs frames of several clips into full batches (a partial one only on ``flush``) and hands back each
    clip once all its frames went through the model."""

    def __init__(self, model: FrameModel, length: int):
        self.model, self.length = model, length
        self._frames: np.ndarray | None = None
        self._places: list[tuple[EncodedClip, int]] = []  # (clip, position) of each queued frame
        self.frames_done = 0

    def add(self, key: Any, frames: np.ndarray) -> list[EncodedClip]:
        """Queues a clip's sampled frames ``(n <= length, S, S, 3)``; returns the clips finished meanwhile."""
        clip = EncodedClip(key, np.zeros((self.length, self.model.dim), np.float32), len(frames), len(frames))
        if self._frames is None:
            self._frames = np.empty((self.model.batch_size, *frames.shape[1:]), np.uint8)
        finished = [] if len(frames) else [clip]
        for position, frame in enumerate(frames):
            self._frames[len(self._places)] = frame
            self._places.append((clip, position))
            if len(self._places) == self.model.batch_size:
                finished += self.flush()
        return finished

    def flush(self) -> list[EncodedClip]:
        """Runs the queued frames (a partial batch is fine); returns the clips this finished."""
        if not self._places:
            return []
        vectors = self.model(self._frames[: len(self._places)])
        finished = []
        for (clip, position), vector in zip(self._places, vectors):
            clip.features[position] = vector
            clip._waiting -= 1
            if clip._waiting == 0:
                finished.append(clip)
        self.frames_done += len(self._places)
        self._places = []
        return finished


def encode_clips(model: FrameModel, clips: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """All clips at once: features ``(N, length, dim)`` float32 and sampled-frame counts ``(N,)``."""
    encoder = ClipEncoder(model, length)
    done = [c for index, frames in enumerate(clips) for c in encoder.add(index, frames)] + encoder.flush()
    out = np.zeros((len(clips), length, model.dim), np.float32)
    counts = np.zeros(len(clips), np.int64)
    for clip in done:
        out[clip.key], counts[clip.key] = clip.features, clip.count
    return out, counts
