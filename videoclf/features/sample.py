"""Uniform temporal sampling, and shorter sequences derived from cached ones.

Rule (the seed's ``frames_downUpSamples``, generalised): a clip of ``n``
decoded frames sampled to ``L`` positions keeps frame ``floor(i * n / L)``
for ``i = 0 .. L-1`` when ``n >= L``. A clip shorter than ``L`` keeps all its
``n`` frames in positions ``0 .. n-1``; the rest is zero padding, masked out
(the seed repeated frames instead, which fakes motion speed).
"""

from __future__ import annotations

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
    """Which cached positions make a ``length``-long sequence from a ``max_length`` entry.

    ``stored`` is how many cached positions hold real frames, ``min(n, max_length)``.
    The result equals direct uniform sampling of the clip whenever the clip was
    shorter than ``max_length`` (every frame is cached), or ``length`` divides
    ``max_length``: ``floor(floor(j*L/l) * n / L) == floor(j*n/l)`` when ``L = k*l``.
    For other lengths it is uniform over the cached positions, which is off
    from direct sampling by less than one cached step (``n / L`` frames).
    """
    if length > max_length:
        raise ValueError(f"Expected length <= cached max_length {max_length}. Received: {length}")
    return uniform_indices(stored, length)


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
