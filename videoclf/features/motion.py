"""The motion stream: dense optical flow at each sampled frame, summarised into a fixed-length step descriptor.

Appearance features are global pictures; what a clip does over time they
carry only as drift. Here, at every sampled position, dense optical flow is
computed between the sampled frame and the next decoded one (the local motion
at that moment, as TSN does, whatever the spacing of the samples), on a small
grey frame, and summarised into numbers that do not depend on the resolution:
displacements are in frame widths, positions too.

Descriptor (``DESCRIPTOR_VERSION`` 1), for a ``g x g`` grid, ``8 + 5 g^2 + 8``
numbers:

* whole frame: mean flow ``dx, dy`` (the picture's motion: ``dx > 0`` when it
  moves right, i.e. a camera panning left), magnitude mean, std and 90th
  percentile, divergence (``> 0`` when the picture expands: zooming in), curl
  (``> 0`` counter-clockwise on screen), and the radial scale rate
  ``sum(f . r) / sum(|r|^2)`` about the centre (a zoom's rate, robust to noise);
* per grid cell: mean ``dx, dy``, magnitude, divergence, curl;
* a magnitude-weighted histogram of flow orientations (8 bins centred on the
  directions right, up-right, up, ... counter-clockwise on screen; HOF-like),
  per pixel, so a still picture is all zeros.
"""

from __future__ import annotations

import cv2
import numpy as np

DESCRIPTOR_VERSION = 1
HOF_BINS = 8
GLOBAL_CHANNELS = ("dx", "dy", "magnitude_mean", "magnitude_std", "magnitude_p90", "divergence", "curl", "radial")
CELL_CHANNELS = ("dx", "dy", "magnitude", "divergence", "curl")
_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def descriptor_size(grid: int) -> int:
    return len(GLOBAL_CHANNELS) + len(CELL_CHANNELS) * grid * grid + HOF_BINS


def descriptor_names(grid: int) -> list[str]:
    """A name per descriptor number, in order (for tables and plots)."""
    cells = [f"cell{r}{c}_{name}" for r in range(grid) for c in range(grid) for name in CELL_CHANNELS]
    return list(GLOBAL_CHANNELS) + cells + [f"hof_{b}" for b in range(HOF_BINS)]


def grey_frame(frame_bgr: np.ndarray, width: int) -> np.ndarray:
    """A decoder frame → grey, ``width`` pixels wide, aspect kept (flow needs no colour nor detail)."""
    height = max(1, round(frame_bgr.shape[0] * width / frame_bgr.shape[1]))
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)


class FlowDescriber:
    """Computes the step descriptor of two grey frames; one instance per thread (the DIS object has state)."""

    def __init__(self, algorithm: str = "dis", preset: str = "ultrafast", width: int = 128, grid: int = 2):
        self.algorithm, self.width, self.grid = algorithm, width, grid
        self.size = descriptor_size(grid)
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[preset]) if algorithm == "dis" else None

    @classmethod
    def from_config(cls, motion) -> "FlowDescriber":
        return cls(motion.algorithm, motion.preset, motion.frame_width, motion.grid)

    def grey(self, frame_bgr: np.ndarray) -> np.ndarray:
        return grey_frame(frame_bgr, self.width)

    def flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Dense flow ``(H, W, 2)`` in pixels from ``first`` to ``second`` (grey, same size)."""
        if self._dis is not None:
            return self._dis.calc(first, second, None)
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def describe(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return describe_flow(self.flow(first, second), self.grid)


def describe_flow(flow: np.ndarray, grid: int = 2) -> np.ndarray:
    """Flow ``(H, W, 2)`` in pixels → the step descriptor (float32, see the module docstring).

    Per-pixel maps are computed with OpenCV (central differences, block means by area resampling), which
    releases the GIL: decoding threads compute motion side by side.
    """
    height, width = flow.shape[:2]
    u, v = cv2.split(np.asarray(flow, np.float32) / np.float32(width))  # frame widths per step

    def derivative(values, dx: int, dy: int):  # d/d(position in frame widths), central differences
        return cv2.Sobel(values, cv2.CV_32F, dx, dy, ksize=1, scale=width / 2, borderType=cv2.BORDER_REPLICATE)

    du_dx, du_dy, dv_dx, dv_dy = derivative(u, 1, 0), derivative(u, 0, 1), derivative(v, 1, 0), derivative(v, 0, 1)
    divergence = du_dx + dv_dy  # rows grow downwards: flipping y leaves the divergence as it is...
    curl = du_dy - dv_dx  # ...and turns dv/dx - du/dy around, so counter-clockwise on screen is positive
    magnitude, angle = cv2.cartToPolar(u, -v)  # screen angle, counter-clockwise from the right
    maps = (u, v, magnitude, divergence, curl)
    cells = np.stack([cv2.resize(m, (grid, grid), interpolation=cv2.INTER_AREA).ravel() for m in maps], axis=-1)
    means = [cv2.mean(m)[0] for m in maps]  # whole frame
    x = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / width
    y = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / width
    radial = float((u @ x).sum() + (y @ v).sum()) / float(height * (x @ x) + width * (y @ y))
    flat = magnitude.ravel()
    spread = float(cv2.meanStdDev(magnitude)[1][0, 0])
    p90 = np.partition(flat, int(0.9 * (flat.size - 1)))[int(0.9 * (flat.size - 1))]
    head = [means[0], means[1], means[2], spread, p90, means[3], means[4], radial]
    bins = (angle.ravel() * np.float32(HOF_BINS / (2 * np.pi)) + np.float32(0.5)).astype(np.int64) % HOF_BINS
    # (bins centred on the axes: right, up-right, up, ...)
    hof = np.bincount(bins, weights=flat, minlength=HOF_BINS) / flat.size
    return np.concatenate([np.asarray(head, np.float64), cells.ravel(), hof]).astype(np.float32)


def clip_statistics(steps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One clip's motion steps ``(T, M)`` → mean, std and first-half minus second-half over its valid steps
    (``3 M`` numbers; zeros when it has none): the motion baseline's features."""
    real = steps[valid].astype(np.float64)
    if len(real) == 0:
        return np.zeros(3 * steps.shape[-1])
    half = max(1, len(real) // 2)
    trend = real[:half].mean(axis=0) - real[half:].mean(axis=0) if len(real) > 1 else np.zeros(steps.shape[-1])
    return np.concatenate([real.mean(axis=0), real.std(axis=0), trend])
