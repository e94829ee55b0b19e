"""``extractor.precision: int8``: the extractor as an int8 LiteRT model, calibrated on real photos.

Why: on a CPU, XNNPACK's int8 kernels (VNNI / AVX-512 where present) run
EfficientNet-Lite0 faster than its fp32 ones (README "Measured",
extract_speed.py). A fully int8 model moves the features too far, most of
it from a few layers; so the
third of the quantised tensors with the largest int8 error, measured layer by
layer against float on the calibration photos (TensorFlow Lite's
quantization debugger), stay in float. The features then stay within
``INT8_TOLERANCE`` of float32's (tested on photos never calibrated on), but
they are not float32's: int8 has its own feature-cache key.

Calibration uses crops of the real photos that ship with scikit-image (the
photo-motion set's training photos), drawn with a fixed seed, so a
conversion is the same on every machine with the same library versions.
"""

from __future__ import annotations

import csv
import io
import warnings

import cv2
import numpy as np

QUANTIZATION_RECIPE = 1  # bump when anything below changes the converted model (it is in the kept file's name)
CALIBRATION_CROPS = 128
CALIBRATION_SEED = 0
FLOAT_SHARE = 1 / 3  # of the quantised tensors, those with the largest int8 error stay in float
# Per frame, against float32 features of the same photo: the stated tolerance of precision=int8 (test_int8).
INT8_TOLERANCE = {"min_cosine": 0.99, "mean_cosine": 0.997}


def photo_crops(photos: tuple[str, ...], count: int, size: int, seed: int) -> np.ndarray:
    """``count`` RGB uint8 ``size``² crops (35–100% of a side, half mirrored) of scikit-image's photos."""
    from videoclf.data.photo_motion import load_photo

    images = [cv2.cvtColor(load_photo(name), cv2.COLOR_BGR2RGB) for name in photos]
    rng = np.random.default_rng(seed)
    crops = np.empty((count, size, size, 3), np.uint8)
    for k in range(count):
        image = images[k % len(images)]
        height, width = image.shape[:2]
        scale = rng.uniform(0.35, 1.0)
        h, w = int(height * scale), int(width * scale)
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        crop = image[y: y + h, x: x + w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops[k] = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    return crops


def calibration_frames(size: int) -> np.ndarray:
    from videoclf.data.photo_motion import TRAIN_PHOTOS

    return photo_crops(TRAIN_PHOTOS, CALIBRATION_CROPS, size, CALIBRATION_SEED)


def _batches(frames: np.ndarray, batch_size: int):
    return lambda: ([frames[k: k + batch_size]] for k in range(0, len(frames) - batch_size + 1, batch_size))


def worst_tensors(debugger, share: float) -> list[str]:
    """The quantised tensors whose int8 error (RMSE in quantisation steps) is largest, ``share`` of them."""
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    errors = []
    for row in csv.DictReader(dump):
        scale = float(row["scale"]) or 1.0
        errors.append((float(row["mean_squared_error"]) ** 0.5 / scale, row["tensor_name"]))
    errors.sort(reverse=True)
    return [name for _, name in errors[: round(len(errors) * share)]]


def quantize(converter, image_size: int, batch_size: int) -> bytes:
    """An int8 flatbuffer from a ready ``TFLiteConverter`` of the uint8-in extractor (see module docstring)."""
    import tensorflow as tf

    frames = calibration_frames(image_size)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _batches(frames, batch_size)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():  # the debugger's own tf.lite.Interpreter deprecation and calibration notes
        warnings.filterwarnings("ignore", module=r"tensorflow\.lite\..*")
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                             debug_dataset=_batches(frames[:32], batch_size))
        debugger.run()
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=worst_tensors(debugger, FLOAT_SHARE))
        return debugger.get_nondebug_quantized_model()
