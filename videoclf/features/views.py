"""Several cached views of one video (``sampling.views``): other frame positions, a mirror image, a closer crop.

A model that sees each training video one way learns that way; TSN draws its
frames at random within segments, MMAction2 tests on several clips and crops
and averages them. Here view ``k`` of a video is a fixed recipe, cached like
the plain features (its own cache folder, the recipe in the key), so training
sees every view of its videos and the test split, ``evaluate``, ``predict``
and ``serve`` average the model's answers over the same views:

* view 0: the frames sampled uniformly, whole (what a cache without views holds);
* view 1: view 0 mirrored left to right; the motion stream is computed on the
  mirrored frames, so its descriptor mirrors too (rightward flow turns leftward);
* view 2: one frame drawn at random within each of the ``L`` equal segments
  (seeded by the view and the clip's length: the same frames in training and
  at prediction, without knowing the file's name);
* view 3: the central ``ZOOM`` of each side (a closer framing);
* views 4 … 7: the combinations (drawn + mirrored, drawn + closer, mirrored +
  closer, all three).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoclf.features.sample import uniform_indices

ZOOM = 0.8  # the closer views keep this fraction of each side, centred
VIEW_RULE = 1  # version of the recipes below: part of every view's cache key
#            drawn, mirrored, closer
_RECIPES = ((False, False, False), (False, True, False), (True, False, False), (False, False, True),
            (True, True, False), (True, False, True), (False, True, True), (True, True, True))
MAX_VIEWS = len(_RECIPES)


@dataclass(frozen=True)
class View:
    """One recipe: which frames (``drawn`` within segments, else uniform) and how they are framed."""

    index: int
    drawn: bool
    mirrored: bool
    closer: bool

    @property
    def plain(self) -> bool:
        return not (self.drawn or self.mirrored or self.closer)

    def key(self) -> dict:
        """What this view adds to a cache key: nothing for view 0 (the caches made before views exist stay valid)."""
        if self.plain:
            return {}
        return {"view": {"index": self.index, "drawn": self.drawn, "mirrored": self.mirrored,
                         "zoom": ZOOM if self.closer else 1.0, "rule": VIEW_RULE}}

    def indices(self, n_frames: int, length: int) -> np.ndarray:
        """Frame indices to keep from a clip of ``n_frames``: uniform, or one drawn within each segment."""
        uniform = uniform_indices(n_frames, length)
        if not self.drawn or n_frames <= length:
            return uniform
        starts = uniform
        ends = ((np.arange(1, length + 1) * n_frames) // length)  # exclusive; segments are never empty here
        draw = np.random.default_rng([VIEW_RULE, self.index, n_frames, length])
        return starts + (draw.random(length) * (ends - starts)).astype(np.int64)

    def framed(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A decoded frame as this view shows it (before ``sampling.crop`` and resizing)."""
        if self.closer:
            height, width = frame_bgr.shape[:2]
            keep_h, keep_w = max(1, round(height * ZOOM)), max(1, round(width * ZOOM))
            top, left = (height - keep_h) // 2, (width - keep_w) // 2
            frame_bgr = frame_bgr[top: top + keep_h, left: left + keep_w]
        if self.mirrored:
            frame_bgr = cv2.flip(frame_bgr, 1)
        return frame_bgr


def view(index: int) -> View:
    if not 0 <= index < MAX_VIEWS:
        raise ValueError(f"Expected a view index in [0, {MAX_VIEWS}). Received: {index}")
    return View(index, *_RECIPES[index])


PLAIN = view(0)


def views(count: int) -> list[View]:
    """The first ``count`` views (``sampling.views``)."""
    return [view(index) for index in range(count)]
