"""Writing the registered model: the video-in pyfunc (logged as code) beside the bare sequence model.

The extractor's weights are bundled, saved from the exact extractor that filled the
cache, so the model predicts offline and needs no Keras download. The pyfunc is logged
as code (``code.py``, MLflow's models-from-code): it holds no pickled object.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mlflow.pyfunc

from videoclf.registered.format import (
    INT8_EXTRACTOR,
    LITERT_EXTRACTOR,
    LITERT_SEQUENCES,
    SETTINGS,
    ModelSettings,
    model_requirements,
    sequence_signature,
    video_signature,
)


def log_registered_model(config, weights, sequence_model, classes, seq_length: int, training_clips: dict | None = None,
                         stream: str = "appearance"):
    """Logs to the active run the bare sequence model (``sequence_model``, for other front ends) and the video-in
    pyfunc (``model``, what is registered); returns the pyfunc's ModelInfo."""
    import mlflow.keras

    mlflow.keras.log_model(sequence_model, name="sequence_model", pip_requirements=model_requirements(),
                           signature=sequence_signature(sequence_model.input_shape[-1], len(classes)))
    return log_video_model(config, weights, sequence_model, classes, seq_length, training_clips, stream)


def log_video_model(config, weights, sequence_model, classes, seq_length: int, training_clips: dict | None = None,
                    stream: str = "appearance"):
    """Logs the video-in pyfunc to the active run; returns its ModelInfo."""
    import videoclf
    from videoclf.features.backbones import build_keras_extractor

    extractor = build_keras_extractor(config.extractor, config.sampling.image_size, weights)
    settings = ModelSettings(tuple(classes), int(seq_length), config.sampling, config.extractor, config.cache.dtype,
                             {"kind": weights.kind, "digest": weights.digest}, training_clips, stream, config.motion)
    with tempfile.TemporaryDirectory(prefix="videoclf-model-") as tmp:
        tmp = Path(tmp)
        sequence_model.save(tmp / "sequence_model.keras")
        extractor.save_weights(tmp / "extractor.weights.h5")
        (tmp / SETTINGS).write_text(settings.to_json())
        artifacts = {"sequence_model": str(tmp / "sequence_model.keras"),
                     "extractor_weights": str(tmp / "extractor.weights.h5"), "settings": str(tmp / SETTINGS)}
        artifacts.update(_litert_artifacts(config, weights, sequence_model, int(seq_length), stream, tmp))
        with warnings.catch_warnings():  # an input example would have to be a real video; the signature says all
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            return mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("code.py")),
                artifacts=artifacts,
                code_paths=[str(Path(videoclf.__file__).parent)], pip_requirements=model_requirements(),
                signature=video_signature(classes), metadata={"classes": list(classes), "seq_length": seq_length})


def _litert_artifacts(config, weights, sequence_model, seq_length: int, stream: str, folder: Path) -> dict[str, str]:
    """The LiteRT forms a CPU needs to predict without TensorFlow: the extractor exactly as it filled the cache
    (int8: the calibrated model itself, not a recipe to redo) and the sequence model. None where LiteRT is not
    installed (the model then runs on Keras, as on a GPU)."""
    from videoclf.features.runtime import (
        build_frame_model,
        convert_sequence_model,
        litert_available,
        runtime_cache_dir,
    )
    from videoclf.streams import uses_appearance

    out = {}
    if config.extractor.precision == "int8" or (litert_available() and uses_appearance(stream)):
        extractor = config.extractor.model_copy(update={"runtime": "litert"})
        frames = build_frame_model(extractor, config.sampling, weights, runtime_cache_dir())
        name, key = (INT8_EXTRACTOR, "int8_extractor") if config.extractor.precision == "int8" else (
            LITERT_EXTRACTOR, "litert_extractor")
        (folder / name).write_bytes(frames.flatbuffer)
        out[key] = str(folder / name)
    if litert_available():
        (folder / LITERT_SEQUENCES).write_bytes(convert_sequence_model(sequence_model, seq_length))
        out["litert_sequence_model"] = str(folder / LITERT_SEQUENCES)
    return out

