"""Fixed per-clip summaries of the cached streams, and the linear classifier over one of them.

The baselines (``videoclf.search.baselines``) are a logistic regression on one
of these summaries. They are candidates for registration like any trial, so the
same functions run in training (on the cache) and in the registered model (on a
new video's streams), and the classifier is kept as plain arrays
(:class:`LinearHead`), read back without unpickling and without scikit-learn.

Every summary reads cache-shaped arrays: ``features (N, L, D)`` with
``stored (N,)`` real frames per clip, and ``motion (N, L, M)`` with its step
flags ``valid (N, L)`` where the motion stream is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videoclf.streams import APPEARANCE, MOTION


def _real_frames(features: np.ndarray, stored: np.ndarray) -> list[np.ndarray]:
    return [seq[: int(n)].astype(np.float64) for seq, n in zip(features, stored)]


def frame_mean_std(features, stored, motion=None, valid=None) -> np.ndarray:
    """Mean and standard deviation of each clip's real frame features (what appearance alone tells)."""
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) if len(f) else
                     np.zeros(2 * features.shape[-1]) for f in _real_frames(features, stored)])


def step_size_statistics(features, stored, motion=None, valid=None) -> np.ndarray:
    """Seven numbers a clip from its step sizes ``|x[t] - x[t-1]|``: mean, spread, min, max, median, how much odd
    and even steps differ, and how much consecutive steps differ (how much the picture changes, not what it
    shows)."""
    rows = []
    for frames in _real_frames(features, stored):
        steps = np.linalg.norm(np.diff(frames, axis=0), axis=1)
        if len(steps) == 0:
            rows.append(np.zeros(7))
            continue
        odd, even = steps[1::2], steps[0::2]
        odd_even = abs(odd.mean() - even.mean()) if len(odd) else 0.0
        jitter = np.abs(np.diff(steps)).mean() if len(steps) > 1 else 0.0
        rows.append(np.array([steps.mean(), steps.std(), steps.min(), steps.max(), np.median(steps), odd_even,
                              jitter]))
    return np.stack(rows)


def motion_statistics(features, stored, motion=None, valid=None) -> np.ndarray:
    """Mean, spread and first-half-minus-second-half trend of each clip's motion steps
    (``videoclf.features.motion.clip_statistics``)."""
    from videoclf.features.motion import clip_statistics

    if motion is None:
        raise ValueError("The motion statistics need the motion stream (motion.enabled: true)")
    return np.stack([clip_statistics(m[: int(n)], v[: int(n)]) for m, v, n in zip(motion, valid, stored)])


# name → (function, the stream it reads)
SUMMARIES = {"frame_mean_std": (frame_mean_std, APPEARANCE),
             "step_size_statistics": (step_size_statistics, APPEARANCE),
             "motion_statistics": (motion_statistics, MOTION)}


def summarize(name: str, features, stored, motion=None, valid=None) -> np.ndarray:
    return SUMMARIES[name][0](features, stored, motion, valid)


@dataclass(frozen=True)
class LinearHead:
    """A fitted ``StandardScaler → LogisticRegression`` over one summary, as arrays: probabilities equal
    scikit-learn's ``predict_proba`` (tested), with a column per vocabulary class (0 for a class missing from
    training)."""

    summary: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (K, F); K = 1 for two classes (scikit-learn's binary form)
    intercept: np.ndarray  # (K,)
    class_index: np.ndarray  # (classes seen in training,) their columns in the vocabulary
    num_classes: int

    @property
    def stream(self) -> str:
        return SUMMARIES[self.summary][1]

    @property
    def n_weights(self) -> int:
        return int(self.coef.size + self.intercept.size)

    @classmethod
    def from_pipeline(cls, summary: str, pipeline, num_classes: int) -> "LinearHead":
        scaler, logreg = pipeline[0], pipeline[-1]
        return cls(summary, scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64),
                   logreg.coef_.astype(np.float64), logreg.intercept_.astype(np.float64),
                   np.asarray(logreg.classes_, np.int64), int(num_classes))

    def probabilities(self, features, stored, motion=None, valid=None) -> np.ndarray:
        """``(N, num_classes)`` float32 class probabilities of the clips."""
        x = (summarize(self.summary, features, stored, motion, valid) - self.mean) / self.scale
        logits = x @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary: logistic on the second class
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            seen = np.stack([1.0 - positive, positive], axis=1)
        else:
            logits = logits - logits.max(axis=1, keepdims=True)
            seen = np.exp(logits)
            seen /= seen.sum(axis=1, keepdims=True)
        out = np.zeros((len(x), self.num_classes), np.float32)
        out[:, self.class_index] = seen
        return out

    def save(self, path: str | Path) -> None:
        np.savez(path, summary=np.array(self.summary), mean=self.mean, scale=self.scale, coef=self.coef,
                 intercept=self.intercept, class_index=self.class_index, num_classes=np.array(self.num_classes))

    @classmethod
    def load(cls, path: str | Path) -> "LinearHead":
        with np.load(path, allow_pickle=False) as stored:
            return cls(str(stored["summary"]), stored["mean"], stored["scale"], stored["coef"], stored["intercept"],
                       stored["class_index"], int(stored["num_classes"]))
