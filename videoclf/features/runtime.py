"""Running the frame extractor on fixed-shape uint8 batches: LiteRT (XNNPACK) on CPUs, TensorFlow otherwise.

``extractor.precision: int8`` (opt-in) runs an int8 model on LiteRT: faster,
with features close to but not equal to float32's, so it has its own cache
key (``features.quantize``).

Why two runtimes: on a CPU, XNNPACK runs EfficientNet-Lite0 much faster
than TensorFlow's graph runtime (README "Measured"; its depthwise convolutions and fused
batch norm / ReLU6 are what XNNPACK is built for), with features equal to
TensorFlow's within float rounding (max |diff| ~1e-5; tested on real photos,
so the feature cache key does not depend on the runtime). On a GPU machine,
TensorFlow runs on the GPU. ``extractor.runtime``: ``auto`` (LiteRT when
``ai-edge-litert`` is installed and no NVIDIA GPU is present), ``litert`` or
``tensorflow``.

The LiteRT model is converted once from the Keras extractor (seconds) and
kept in ``~/.cache/videoclf/runtimes``
(``VIDEOCLF_RUNTIME_CACHE`` to move it), so a later run loads it without
importing TensorFlow or building Keras at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from videoclf.config import ExtractorConfig, SamplingConfig
from videoclf.console import quiet_tensorflow, silenced_stderr
from videoclf.features.backbones import FEATURE_DIMS, WeightsSource, build_keras_extractor
from videoclf.versions import installed_versions

LITERT_BATCH = 4  # frames per interpreter call (see LiteRTFrames)


def runtime_cache_dir() -> Path:
    """Where converted LiteRT models are kept (13 MB for Lite0, 87 MB for InceptionV3 each)."""
    default = Path.home() / ".cache" / "videoclf" / "runtimes"
    return Path(os.environ.get("VIDEOCLF_RUNTIME_CACHE") or default)


class FrameModel(Protocol):
    """Frames ``(n <= batch_size, S, S, 3)`` uint8 RGB → features ``(n, dim)`` float32."""

    batch_size: int
    dim: int
    runtime: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def _padded(frames: np.ndarray, batch_size: int) -> np.ndarray:
    """One fixed batch shape means one trace / one allocation; the last, partial batch is padded."""
    if len(frames) == batch_size:
        return frames
    pad = np.zeros((batch_size - len(frames), *frames.shape[1:]), frames.dtype)
    return np.concatenate([frames, pad])


class TensorFlowFrames:
    """The Keras extractor as one traced ``tf.function`` over uint8 batches."""

    runtime = "tensorflow"

    def __init__(self, keras_model, batch_size: int, image_size: int, dim: int, warm: bool = True):
        quiet_tensorflow()
        import tensorflow as tf

        self.batch_size, self.dim = batch_size, dim

        @tf.function(input_signature=[tf.TensorSpec([batch_size, image_size, image_size, 3], tf.uint8)])
        def forward(frames):
            return keras_model(tf.cast(frames, tf.float32), training=False)

        self.forward = forward
        if warm:  # trace now, so the first real batch is not slower than the rest (and timings compare)
            forward(np.zeros((batch_size, image_size, image_size, 3), np.uint8))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.forward(_padded(frames, self.batch_size)).numpy()[: len(frames)]


class LiteRTFrames:
    """A converted extractor run by LiteRT's interpreter with XNNPACK on ``threads`` CPU threads.

    The interpreter runs ``LITERT_BATCH`` frames at a time whatever ``batch_size`` the caller packs:
    small batches stay in the CPU caches (faster than large ones: extract_speed.py).
    """

    runtime = "litert"

    def __init__(self, flatbuffer: bytes, batch_size: int, dim: int, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.batch_size, self.dim = batch_size, dim
        self.flatbuffer = flatbuffer  # bundled into registered int8 models: the exact model that filled the cache
        with silenced_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self._interpreter = Interpreter(model_content=flatbuffer, num_threads=threads or os.cpu_count() or 1)
            self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        self._input, self._chunk = details["index"], int(details["shape"][0])
        output = self._interpreter.get_output_details()[0]
        self._output, self._classes = output["index"], tuple(int(n) for n in output["shape"][1:])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self._chunk):
            chunk = frames[start: start + self._chunk]
            self._interpreter.set_tensor(self._input, _padded(np.ascontiguousarray(chunk), self._chunk))
            self._interpreter.invoke()
            out[start: start + len(chunk)] = self._interpreter.get_tensor(self._output)[: len(chunk)]
        return out


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def choose_runtime(requested: str, precision: str = "float32") -> str:
    """``auto``: LiteRT on a CPU-only machine where it is installed; TensorFlow where an NVIDIA GPU is present.
    int8 runs on LiteRT only (the config refuses ``runtime: tensorflow`` with it)."""
    if precision == "int8" and requested == "auto":
        requested = "litert"
    if requested != "auto":
        if requested == "litert" and not litert_available():
            from videoclf.errors import WeightsError

            needs = "extractor.precision=int8" if precision == "int8" else "extractor.runtime=litert"
            fix = "extractor.precision=float32" if precision == "int8" else "extractor.runtime=tensorflow"
            raise WeightsError(f"{needs} needs the ai-edge-litert package: pip install ai-edge-litert (or set {fix})")
        return requested
    return "litert" if litert_available() and not gpu_present() else "tensorflow"


def gpu_present() -> bool:
    """An NVIDIA GPU for TensorFlow (``VIDEOCLF_ASSUME_GPU`` says so without one, for tests)."""
    return Path("/dev/nvidia0").exists() or bool(os.environ.get("VIDEOCLF_ASSUME_GPU"))


def convert_to_litert(keras_model, batch_size: int, image_size: int, precision: str = "float32") -> bytes:
    """The Keras extractor (uint8 in, preprocessing inside) as a LiteRT flatbuffer: fp32 (no quantisation), or
    int8 calibrated on real photos (``features.quantize``)."""
    quiet_tensorflow()
    import tensorflow as tf

    traced = TensorFlowFrames(keras_model, batch_size, image_size, int(keras_model.output_shape[-1]), warm=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([traced.forward.get_concrete_function()],
                                                                traced.forward)
    with silenced_stderr():  # the converter's MLIR pass notices
        if precision == "int8":
            from videoclf.features.quantize import quantize

            return quantize(converter, image_size, batch_size)
        return converter.convert()


def converted_path(cache_dir: Path, config: ExtractorConfig, image_size: int, weights: WeightsSource) -> Path:
    """Where a converted extractor is kept: everything that changes the flatbuffer is in its name."""
    from videoclf.features.quantize import QUANTIZATION_RECIPE

    precision = f"int8r{QUANTIZATION_RECIPE}" if config.precision == "int8" else "fp32"
    identity = f"{config.name}|{image_size}|{LITERT_BATCH}|{weights.digest}|{config.seed}|{precision}|" + "|".join(
        f"{k}={v}" for k, v in installed_versions(("tensorflow", "keras", "ai-edge-litert")).items())
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{config.name}-{image_size}px-b{LITERT_BATCH}-{precision}-{digest}.tflite"


def build_frame_model(config: ExtractorConfig, sampling: SamplingConfig, weights: WeightsSource,
                      cache_dir: Path | None = None, keras_extractor: Callable[[], object] | None = None) -> FrameModel:
    """The configured extractor on the chosen runtime (the one place it is built, for extraction and for the
    registered model); with ``cache_dir`` (e.g. ``runtime_cache_dir()``), a converted LiteRT model is kept there
    and reused, keyed by ``weights.digest``. ``keras_extractor()`` builds the Keras model when one is needed (default:
    from ``weights``; the registered model loads its bundled weights, the same ones, so the same digest)."""
    dim = FEATURE_DIMS[config.name]
    build = keras_extractor or (lambda: build_keras_extractor(config, sampling.image_size, weights))
    if choose_runtime(config.runtime, config.precision) == "tensorflow":
        quiet_tensorflow()  # TensorFlow is imported only where a model is built (a kept LiteRT model needs none)
        return TensorFlowFrames(build(), config.batch_size, sampling.image_size, dim)
    file = converted_path(cache_dir, config, sampling.image_size, weights) if cache_dir else None
    if file is not None and file.is_file():
        try:
            return LiteRTFrames(file.read_bytes(), config.batch_size, dim)  # no TensorFlow import, no Keras build
        except (OSError, ValueError, RuntimeError):
            file.unlink(missing_ok=True)  # unreadable: convert again
    quiet_tensorflow()
    flatbuffer = convert_to_litert(build(), LITERT_BATCH, sampling.image_size, config.precision)
    if file is not None:
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(flatbuffer)
            os.replace(tmp, file)
        except OSError:  # an optimisation only: the next run converts again
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return LiteRTFrames(flatbuffer, config.batch_size, dim)


# -- the sequence model on LiteRT -------------------------------------------------
def convert_sequence_model(keras_model, seq_length: int) -> bytes:
    """A sequence model as a LiteRT flatbuffer over one clip ``(1, seq_length, width)``: its variables frozen into
    constants (Keras' seed generators and normalisation statistics would otherwise be resource variables LiteRT
    cannot read) and its recurrent loops unrolled by the converter's static shapes."""
    quiet_tensorflow()
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    width = int(keras_model.input_shape[-1])
    forward = tf.function(lambda clips: keras_model(clips, training=False),
                          input_signature=[tf.TensorSpec([1, seq_length, width], tf.float32)])
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    with silenced_stderr():  # the converter's MLIR pass notices
        return converter.convert()


class LiteRTSequences:
    """A converted sequence model run by LiteRT, clip by clip (its input shape is fixed: one clip): what the
    registered model predicts with on CPUs, without importing TensorFlow."""

    def __init__(self, flatbuffer: bytes, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        with silenced_stderr():
            self._interpreter = Interpreter(model_content=flatbuffer, num_threads=threads or os.cpu_count() or 1)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        output = self._interpreter.get_output_details()[0]
        self._output, self._classes = output["index"], tuple(int(n) for n in output["shape"][1:])

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        out = []
        for clip in np.asarray(clips, np.float32):
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(clip[None]))
            self._interpreter.invoke()
            out.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.stack(out) if out else np.zeros((0, *self._classes), np.float32)

