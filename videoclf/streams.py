"""Which cached streams a sequence model reads, and the one input layout they share in training and inference.

A trial reads ``appearance`` (the CNN's frame features), ``motion`` (the
optical-flow step descriptors) or ``appearance+motion``. Its input is one
``(N, T, width)`` tensor, concatenated per step:

* ``appearance``: the frame features ``D`` (exactly the layout before motion existed);
* ``motion``: the step descriptor ``M``, then a 1 where that step exists (a
  sampled frame with a successor), 0 where it does not;
* ``appearance+motion``: ``D``, then ``M``, then the step flag.

All-zero steps are padding, as before: a real frame has non-zero features, a
motion-only step that exists has its flag set.
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from videoclf.config import Stream
from videoclf.features.sample import derive_sequences

STREAMS = get_args(Stream)  # the config's type spells them; every other module names them from here
APPEARANCE, MOTION, APPEARANCE_MOTION = STREAMS


def uses_appearance(stream: str) -> bool:
    return stream in (APPEARANCE, APPEARANCE_MOTION)


def uses_motion(stream: str) -> bool:
    return stream in (MOTION, APPEARANCE_MOTION)


def stream_reading(streams) -> str:
    """The one stream that carries everything ``streams`` read (what a model of several members decodes)."""
    appearance, motion = any(uses_appearance(s) for s in streams), any(uses_motion(s) for s in streams)
    return APPEARANCE_MOTION if appearance and motion else MOTION if motion else APPEARANCE


def stream_width(stream: str, appearance_dim: int, motion_dim: int) -> int:
    """Numbers per step in ``stream``'s input layout."""
    if stream not in STREAMS:
        raise ValueError(f"Expected a stream among {STREAMS}. Received: {stream!r}")
    return (appearance_dim if uses_appearance(stream) else 0) + (motion_dim + 1 if uses_motion(stream) else 0)


def stream_sequences(stream: str, length: int, stored: np.ndarray, features: np.ndarray | None,
                     motion: np.ndarray | None = None, motion_valid: np.ndarray | None = None) -> np.ndarray:
    """Cached-length arrays ``(N, L, ·)`` → the model's input ``(N, length, width)`` float32, both streams cut at
    the same positions (see :func:`videoclf.features.sample.derive_sequences`)."""
    parts = []
    if uses_appearance(stream):
        parts.append(features.astype(np.float32))
    if uses_motion(stream):
        if motion is None:
            raise ValueError(f"Stream {stream!r} needs the motion stream (motion.enabled), which is missing")
        valid = motion_valid.astype(np.float32)[..., None]
        parts += [motion.astype(np.float32) * valid, valid]
    joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    return derive_sequences(joined, stored, length)[0]

