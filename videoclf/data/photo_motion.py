"""A second embedded data set: real photographs filmed by a virtual camera, classes defined by the motion.

The photos are the real sample images that ship inside scikit-image (an
astronaut, a cat, coffee, a rocket, a retina, the Hubble deep field, textures,
text…). A virtual camera moves over each photo: it stays still, pans slowly
or fast in one of four directions, zooms in or out at varied speeds, or
shakes. Every class uses every photo, so what a clip shows says nothing about
its class; only how the picture moves does. Clips vary in length (many are
shorter than the cached sequence length, so their frame rhythm matters),
frame size, framing and speed. Test clips come from photos never used in
training (UCF101 style: a group ``gNN`` is one photo).

With ``test_camera: shifted`` the test clips are also filmed unlike the
training ones (:data:`SHIFTED`): closer framing, frame sizes and lengths never
seen in training, pan speeds, zoom ratios and shake at and beyond the ends of
the training ranges, more sensor noise and exposure spread. Validation inside
the training photos cannot see that shift: a set where test differs from
training, to judge what gets registered.

Real image statistics meet motion-defined classes: a fair, offline stand-in
for real footage, which the synthetic demo set is not.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from videoclf.config import PhotoMotionConfig
from videoclf.data import generated
from videoclf.errors import DataError

CLASSES = ("Still", "PanSlow", "PanFast", "ZoomIn", "ZoomOut", "Shake")
TEST_PHOTOS = ("coffee.png", "rocket.jpg", "camera.png", "gravel.png", "ihc.png")
TRAIN_PHOTOS = ("astronaut.png", "brick.png", "cell.png", "chelsea.png", "clock_motion.png", "coins.png",
                "grass.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
                "page.png", "retina.jpg", "text.png")
FRAME_SIZES = ((160, 120), (192, 144), (224, 168), (256, 192), (320, 240), (240, 240))
GENERATOR_VERSION = 1
MANIFEST = "photo_motion_manifest.json"
SENSOR_NOISE = 2.0  # grey levels, new every frame
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


@dataclass(frozen=True)
class Camera:
    """How one split's clips are filmed (ranges drawn uniformly per clip)."""

    pan_slow: tuple[float, float] = (0.6, 1.5)  # output pixels a frame
    pan_fast: tuple[float, float] = (3.5, 7.0)
    zoom_ratio: tuple[float, float] = (1.25, 2.2)  # over the whole clip
    shake: tuple[float, float] = (2.5, 8.0)  # pixels
    framing: tuple[float, float] = (0.5, 1.1)  # × the scale that just fills the frame (then × 1.6)
    frame_sizes: tuple[tuple[int, int], ...] = FRAME_SIZES
    length_factor: float = 1.0  # × the configured clip lengths
    noise: float = SENSOR_NOISE
    brightness: tuple[float, float] = (0.85, 1.15)


TRAINING = Camera()
SHIFTED = Camera(pan_slow=(1.3, 2.2), pan_fast=(6.0, 9.0), zoom_ratio=(2.0, 3.0), shake=(7.0, 11.0),
                 framing=(1.2, 1.8), frame_sizes=((400, 300), (480, 270), (360, 360)), length_factor=1.5, noise=4.0,
                 brightness=(0.7, 1.3))


def photo_dir() -> Path:
    """scikit-image's bundled sample photos (installed with the package; nothing is downloaded)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The photo-motion data set needs scikit-image's sample photos: pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_photo(name: str) -> np.ndarray:
    """A bundled photo as a BGR uint8 image (grey photos get three equal channels)."""
    from videoclf.console import silenced_stderr

    path = photo_dir() / name
    with silenced_stderr():  # libpng's "iCCP: known incorrect sRGB profile" about scikit-image's PNGs
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: sample photo missing or unreadable; reinstall scikit-image")
    return image


def _trajectory(label: str, rng: np.random.Generator, n: int, camera: Camera = TRAINING):
    """Per-frame viewport shift (output pixels, relative to the start) and zoom factor."""
    t = np.arange(n, dtype=np.float64)
    shift = np.zeros((n, 2))
    zoom = np.ones(n)
    if label in ("PanSlow", "PanFast"):
        speed = rng.uniform(*camera.pan_slow) if label == "PanSlow" else rng.uniform(*camera.pan_fast)
        shift = np.outer(t * speed, DIRECTIONS[int(rng.integers(4))])
    elif label in ("ZoomIn", "ZoomOut"):
        progress = t / max(n - 1, 1)  # a fixed total ratio: short clips zoom fast, long ones slowly
        zoom = rng.uniform(*camera.zoom_ratio) ** (progress if label == "ZoomIn" else 1 - progress)
    elif label == "Shake":
        amplitude = rng.uniform(*camera.shake)
        shift = rng.normal(0, amplitude, (n, 2))
        shift = 0.6 * shift + 0.4 * np.roll(shift, 1, axis=0)  # a hand, not white noise
    # every camera trembles a little; a still one too
    shift = shift + rng.normal(0, 0.25, (n, 2))
    return shift, zoom


def render_clip(label: str, photo: np.ndarray, rng: np.random.Generator, n_frames: int,
                size: tuple[int, int], camera: Camera = TRAINING) -> list[np.ndarray]:
    """Films ``photo`` with the virtual camera of ``label``; pure given ``rng``."""
    width, height = size
    shift, zoom = _trajectory(label, rng, n_frames, camera)
    photo_h, photo_w = photo.shape[:2]
    travel = np.abs(shift).max(axis=0) * 2 + 2  # output pixels the viewport may move
    # Output pixels per photo pixel: a random framing, enlarged if needed so the whole path stays on the photo.
    base = max(rng.uniform(*camera.framing) * max(width / photo_w, height / photo_h) * 1.6,
               (width + travel[0]) / photo_w, (height + travel[1]) / photo_h)
    view_w, view_h = (width + travel[0]) / base, (height + travel[1]) / base
    # Centre the path on the photo, then move it by a random part of the room left over.
    room = np.maximum(np.array([photo_w - view_w, photo_h - view_h]) / 2, 0)
    centre = np.array([photo_w / 2, photo_h / 2]) - (shift.max(axis=0) + shift.min(axis=0)) / (2 * base)
    centre = centre + rng.uniform(-1, 1, 2) * room
    brightness = rng.uniform(*camera.brightness)
    frames = []
    for i in range(n_frames):
        scale = base * zoom[i]
        x0 = centre[0] + shift[i, 0] / base - width / (2 * scale)
        y0 = centre[1] + shift[i, 1] / base - height / (2 * scale)
        matrix = np.array([[scale, 0, -scale * x0], [0, scale, -scale * y0]])
        frame = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        frame = frame * brightness + rng.normal(0, camera.noise, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def _split_photos() -> dict[str, tuple[str, ...]]:
    return {"test": TEST_PHOTOS, "train": TRAIN_PHOTOS}


def _manifest(config: PhotoMotionConfig) -> dict:
    settings = config.model_dump()
    if settings["test_camera"] == "same":
        settings.pop("test_camera")  # sets written before the setting existed stay current
    return {"generator_version": GENERATOR_VERSION, "classes": list(CLASSES), "opencv": cv2.__version__,
            "photos": {k: list(v) for k, v in _split_photos().items()}, **settings}


def is_current(out_dir: Path, config: PhotoMotionConfig) -> bool:
    """True when ``out_dir`` already holds this exact set (so it is not rewritten)."""
    return generated.is_current(out_dir, MANIFEST, _manifest(config))


def generate_photo_motion(out_dir: str | Path, config: PhotoMotionConfig | None = None, force: bool = False,
                          progress: bool = True) -> Path:
    """Writes the photo-motion videos plus ``train.csv``/``test.csv``; deterministic from ``config.seed``."""
    from tqdm import tqdm

    config = config or PhotoMotionConfig()
    out_dir = Path(out_dir)
    if not force and is_current(out_dir, config):
        return out_dir
    generated.start_set(out_dir, MANIFEST)
    jobs = [(split, group, photo, class_index, label, clip)
            for split, photos in _split_photos().items()
            for group, photo in enumerate(photos, start=1 if split == "test" else len(TEST_PHOTOS) + 1)
            for class_index, label in enumerate(CLASSES)
            for clip in range(1, config.clips_per_photo + 1)]
    rows: dict[str, list] = {"train": [], "test": []}
    photos: dict[str, np.ndarray] = {}
    for split, group, photo, class_index, label, clip in tqdm(jobs, desc="photo-motion videos", unit="video",
                                                              disable=not progress):
        image = photos.setdefault(photo, load_photo(photo))
        rng = np.random.default_rng([config.seed, group, class_index, clip])
        camera = SHIFTED if split == "test" and config.test_camera == "shifted" else TRAINING
        n_frames = int(rng.integers(round(config.min_frames * camera.length_factor),
                                    round(config.max_frames * camera.length_factor) + 1))
        size = camera.frame_sizes[int(rng.integers(len(camera.frame_sizes)))]
        name = f"v_{label}_g{group:02d}_c{clip:02d}.avi"
        generated.write_video(out_dir / name, render_clip(label, image, rng, n_frames, size, camera))
        rows[split].append((name, label))
    generated.finish_set(out_dir, MANIFEST, _manifest(config), rows)
    return out_dir
