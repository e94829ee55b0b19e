"""Uniform temporal sampling, and shorter sequences derived from cached ones.

Rule (the seed's ``frames_downUpSamples``, generalised): a clip of ``n``
decoded frames sampled to ``L`` positions keeps frame ``floor(i * n / L)``
for ``i = 0 .. L-1`` when ``n >= L``. A clip shorter than ``L`` keeps all its
``n`` frames in positions ``0 .. n-1``; the rest is zero padding, masked out
(the seed repeated frames instead, which fakes motion speed).

Shorter sequences for the search are cut from the cache with one regular
stride, never an uneven one, so consecutive-frame rhythm (the step from one
frame to the next) survives: motion features depend on it.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLING_RULE = "floor(i*n/L); n<L: all frames + zero pad, masked"


def uniform_indices(n_frames: int, length: int) -> np.ndarray:
    """Frame indices to keep from a clip of ``n_frames`` (all of them if fewer than ``length``)."""
    if n_frames < 1 or length < 1:
        raise ValueError(f"Expected n_frames >= 1 and length >= 1. Received: {n_frames}, {length}")
    if n_frames <= length:
        return np.arange(n_frames)
    return (np.arange(length) * n_frames) // length


def derived_positions(stored: int, max_length: int, length: int) -> np.ndarray:
    """Which cached positions make a sequence of at most ``length`` from a ``max_length`` entry.

    ``stored`` is how many cached positions hold real frames, ``min(n, max_length)``.
    Every ``ceil(stored / length)``-th position is kept: one regular stride, so a
    short clip (all frames cached) keeps its frame rhythm. When ``length``
    divides ``max_length`` and the clip filled the cache, this equals direct
    uniform sampling of the clip: ``floor(floor(j*L/l) * n / L) == floor(j*n/l)``
    when ``L = k*l``. Other lengths give fewer than ``length`` positions.
    """
    if length > max_length:
        raise ValueError(f"Expected length <= cached max_length {max_length}. Received: {length}")
    if stored <= length:
        return np.arange(stored)
    return np.arange(0, stored, math.ceil(stored / length))


def derive_sequences(features: np.ndarray, stored: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Slices ``(N, L, D)`` cached features to ``(N, length, D)`` plus a boolean mask."""
    count, max_length, dim = features.shape
    out = np.zeros((count, length, dim), features.dtype)
    mask = np.zeros((count, length), bool)
    for row in range(count):
        if stored[row] < 1:
            continue  # nothing decoded: an all-padding row
        positions = derived_positions(int(stored[row]), max_length, length)
        out[row, : len(positions)] = features[row, positions]
        mask[row, : len(positions)] = True
    return out, mask
