"""The embedded offline data set: synthetic videos whose classes differ only over time.

Every class draws the same kind of picture (a circle, square or arrow on a
textured background); what tells them apart is how it changes: it grows,
shrinks, turns from blue to red or from red to blue, or blinks. Grow/Shrink
and TurnRed/TurnBlue contain the same frames in opposite order, so averaging
frames cannot separate them; a recurrent model can. (Clockwise vs
counter-clockwise rotation and fade in/out were tried and dropped: pooled CNN
features keep almost no trace of rotation direction, and a fade looks like a
change of size to them.) Names follow UCF101
(``v_Class_gNN_cMM.avi``): a group is one scene (background colour and
texture, frame size) shared by every class, so a scene says nothing about
the class, and grouped validation splits matter. Test
groups are disjoint from train groups, as in UCF101's official splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from videoclf.config import DemoConfig
from videoclf.data import generated

CLASSES = ("Grow", "Shrink", "TurnRed", "TurnBlue", "Blink")
FRAME_SIZES = ((160, 120), (192, 144), (224, 168), (256, 192), (320, 240), (240, 240))
GENERATOR_VERSION = 4
MANIFEST = "demo_manifest.json"


@dataclass(frozen=True)
class Scene:
    """What a UCF101-style group shares: frame size, colours, background texture."""

    width: int
    height: int
    background: tuple[int, int, int]
    colour: tuple[int, int, int]
    texture_seed: int


def _scene(rng: np.random.Generator) -> Scene:
    width, height = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    background = rng.integers(0, 256, 3)
    # Keep the shape visible: push its colour away from the background.
    colour = (background + rng.integers(96, 160, 3)) % 256
    return Scene(int(width), int(height), tuple(int(c) for c in background),
                 tuple(int(c) for c in colour), int(rng.integers(2**31)))


def _background(scene: Scene) -> np.ndarray:
    rng = np.random.default_rng(scene.texture_seed)
    noise = rng.normal(0, 10, (scene.height // 8 + 1, scene.width // 8 + 1, 3))
    noise = cv2.resize(noise, (scene.width, scene.height), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.asarray(scene.background, np.float64) + noise, 0, 255).astype(np.uint8)


def _draw_arrow(frame, centre, length, angle, colour):
    """A large asymmetric arrow: its orientation dominates the frame's appearance."""
    shape = np.array([[1.0, 0.0], [-0.5, 0.45], [-0.2, 0.0], [-0.5, -0.45]]) * length
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (shape @ rotation.T + np.asarray(centre)).astype(np.int32)
    cv2.fillPoly(frame, [points], colour, cv2.LINE_AA)


def _hsv_colour(rng: np.random.Generator, hue: int) -> np.ndarray:
    """A BGR colour near OpenCV hue ``hue`` (0 red, 120 blue) with random saturation and value."""
    pixel = np.array([[[(hue + rng.integers(-8, 9)) % 180, rng.integers(170, 256), rng.integers(150, 256)]]],
                     np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def _draw_shape(frame, kind, centre, radius, angle, colour):
    if kind == "circle":
        cv2.circle(frame, centre, int(radius), colour, -1, cv2.LINE_AA)
    elif kind == "square":
        r = int(radius)
        cv2.rectangle(frame, (centre[0] - r, centre[1] - r), (centre[0] + r, centre[1] + r), colour, -1)
    else:
        _draw_arrow(frame, centre, radius * 1.3, angle, colour)


def render_clip(label: str, scene: Scene, rng: np.random.Generator, n_frames: int) -> list[np.ndarray]:
    """Draws one clip of ``label`` in ``scene`` as BGR frames; pure given ``rng``.

    Shape, position, sizes, speed and blink rate are drawn per clip, the same
    way for every class; only the change over time depends on ``label``.
    """
    background = _background(scene)
    short = min(scene.width, scene.height)
    centre = (int(scene.width * rng.uniform(0.35, 0.65)), int(scene.height * rng.uniform(0.35, 0.65)))
    kind = ("circle", "square", "arrow")[int(rng.integers(3))]
    angle = rng.uniform(0, 2 * np.pi)
    small, large = short * rng.uniform(0.06, 0.12), short * rng.uniform(0.3, 0.42)
    size = short * rng.uniform(0.18, 0.32)
    # Blink: 1.5-3 on/off cycles per clip, so any sampling of >= 10 frames still sees it blink.
    half_cycle = n_frames / (2 * rng.uniform(1.5, 3.0))
    # Colour turns go between a red and a blue of random saturation/brightness, at a random ease.
    ease = rng.uniform(0.7, 1.4)
    red, blue = _hsv_colour(rng, 0), _hsv_colour(rng, 120)
    frames = []
    for t in range(n_frames):
        progress = t / max(n_frames - 1, 1)
        frame = background.copy()
        radius, colour, visible = size, scene.colour, True
        if label == "Grow":
            radius = small + (large - small) * progress
        elif label == "Shrink":
            radius = small + (large - small) * (1 - progress)
        elif label in ("TurnRed", "TurnBlue"):
            mix = progress**ease
            start, end = (blue, red) if label == "TurnRed" else (red, blue)
            colour = tuple(int(a + (b - a) * mix) for a, b in zip(start, end))
        elif label == "Blink":
            visible = int(t // half_cycle) % 2 == 0
        if visible:
            _draw_shape(frame, kind, centre, radius, angle, colour)
        frames.append(frame)
    return frames


def _split_groups(config: DemoConfig) -> dict[str, range]:
    # UCF101 style: the first groups are the test split, the rest train.
    return {"test": range(1, config.test_groups + 1),
            "train": range(config.test_groups + 1, config.test_groups + config.train_groups + 1)}


def _manifest(config: DemoConfig) -> dict:
    return {"generator_version": GENERATOR_VERSION, "classes": list(CLASSES),
            "opencv": cv2.__version__, **config.model_dump()}


def is_current(out_dir: Path, config: DemoConfig) -> bool:
    """True when ``out_dir`` already holds this exact demo set (so it is not rewritten)."""
    return generated.is_current(out_dir, MANIFEST, _manifest(config))


def generate_demo(out_dir: str | Path, config: DemoConfig | None = None, force: bool = False,
                  progress: bool = True) -> Path:
    """Writes the demo videos plus ``train.csv``/``test.csv`` under ``out_dir``.

    Deterministic from ``config.seed``; skipped when the set on disk already
    matches ``config`` (unless ``force``).
    """
    config = config or DemoConfig()
    out_dir = Path(out_dir)
    if not force and is_current(out_dir, config):
        return out_dir
    from tqdm import tqdm

    generated.start_set(out_dir, MANIFEST)

    jobs = [(split, class_index, label, group, clip) for split, groups in _split_groups(config).items()
            for class_index, label in enumerate(CLASSES) for group in groups
            for clip in range(1, config.clips_per_group + 1)]
    rows: dict[str, list] = {split: [] for split in _split_groups(config)}
    for split, class_index, label, group, clip in tqdm(jobs, desc="demo videos", unit="video", disable=not progress):
        scene = _scene(np.random.default_rng([config.seed, group]))
        rng = np.random.default_rng([config.seed, class_index, group, clip])
        n_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
        name = f"v_{label}_g{group:02d}_c{clip:02d}.avi"
        generated.write_video(out_dir / name, render_clip(label, scene, rng, n_frames))
        rows[split].append((name, label))
    generated.finish_set(out_dir, MANIFEST, _manifest(config), rows)
    return out_dir
