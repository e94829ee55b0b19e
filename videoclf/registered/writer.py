"""Writing the registered model: the video-in pyfunc (logged as code) beside the bare sequence model.

The extractor's weights are bundled, saved from the exact extractor that filled the
cache, so the model predicts offline and needs no Keras download. The pyfunc is logged
as code (``code.py``, MLflow's models-from-code): it holds no pickled object.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc

from videoclf.tempfiles import private_folder
from videoclf.summaries import LinearHead

from videoclf.registered.format import (
    EXTRACTOR_WEIGHTS_KEY,
    INT8_EXTRACTOR,
    INT8_EXTRACTOR_KEY,
    KERAS_MEMBER,
    LINEAR_MEMBER,
    LITERT_EXTRACTOR,
    LITERT_EXTRACTOR_KEY,
    LITERT_SEQUENCE_MODEL_KEY,
    LITERT_SEQUENCES,
    LITERT_SUFFIX,
    MEMBER_PREFIX,
    SEQUENCE_MODEL_KEY,
    SETTINGS,
    SETTINGS_KEY,
    MemberSpec,
    ModelSettings,
    model_requirements,
    sequence_signature,
    video_signature,
)
from videoclf.registered.integrity import recorded_digests
from videoclf.streams import APPEARANCE, stream_reading


def log_registered_model(config, weights, sequence_model, classes, seq_length: int, training_clips: dict | None = None,
                         stream: str = APPEARANCE):
    """Logs to the active run the bare sequence model (``sequence_model``, for other front ends) and the video-in
    pyfunc (``model``, what is registered); returns the pyfunc's ModelInfo."""
    import mlflow.keras

    mlflow.keras.log_model(sequence_model, name="sequence_model", pip_requirements=model_requirements(),
                           signature=sequence_signature(sequence_model.input_shape[-1], len(classes)))
    return log_video_model(config, weights, sequence_model, classes, seq_length, training_clips, stream)


def log_members(config, weights, members, classes, training_clips: dict | None = None):
    """Logs the registered model for the selection's ``members`` (``videoclf.search.final.Member``): one Keras
    model alone is logged exactly as before (the bare sequence model beside the pyfunc); several models, or a
    linear one, as a pyfunc averaging them. Returns the pyfunc's ModelInfo."""
    if len(members) == 1 and not isinstance(members[0].model, LinearHead):
        only = members[0]
        return log_registered_model(config, weights, only.model, classes, only.seq_length, training_clips,
                                    only.stream)
    return log_video_model(config, weights, None, classes, max(m.seq_length for m in members), training_clips,
                           stream_reading([m.stream for m in members]), members)


def log_video_model(config, weights, sequence_model, classes, seq_length: int, training_clips: dict | None = None,
                    stream: str = APPEARANCE, members=()):
    """Logs the video-in pyfunc to the active run; returns its ModelInfo. With ``members``, the pyfunc averages
    them (``sequence_model`` is then None)."""
    import videoclf
    from videoclf.features.backbones import build_keras_extractor

    extractor = build_keras_extractor(config.extractor, config.sampling.image_size, weights)
    with private_folder("model") as tmp:
        tmp = Path(tmp)
        artifacts = {EXTRACTOR_WEIGHTS_KEY: str(tmp / "extractor.weights.h5"), SETTINGS_KEY: str(tmp / SETTINGS)}
        if sequence_model is not None:
            sequence_model.save(tmp / "sequence_model.keras")
            artifacts[SEQUENCE_MODEL_KEY] = str(tmp / "sequence_model.keras")
            artifacts.update(_litert_sequences(sequence_model, int(seq_length), tmp / LITERT_SEQUENCES,
                                               LITERT_SEQUENCE_MODEL_KEY))
        specs = tuple(_write_member(index, member, tmp, artifacts) for index, member in enumerate(members))
        extractor.save_weights(tmp / "extractor.weights.h5")
        artifacts.update(_litert_extractor(config, weights, stream, tmp))
        settings = ModelSettings(tuple(classes), int(seq_length), config.sampling, config.extractor,
                                 config.cache.dtype, {"kind": weights.kind, "digest": weights.digest}, training_clips,
                                 stream, config.motion, specs, recorded_digests(artifacts))
        (tmp / SETTINGS).write_text(settings.to_json())  # last: it records every other file's size and digest
        with warnings.catch_warnings():  # an input example would have to be a real video; the signature says all
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            return mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("code.py")),
                artifacts=artifacts,
                code_paths=[str(Path(videoclf.__file__).parent)], pip_requirements=model_requirements(),
                signature=video_signature(classes), metadata={"classes": list(classes), "seq_length": seq_length})


def _write_member(index: int, member, folder: Path, artifacts: dict[str, str]) -> MemberSpec:
    """One member's files (a LinearHead's arrays, or a Keras model and its LiteRT form) into ``artifacts``."""
    key = f"{MEMBER_PREFIX}{index}"
    if isinstance(member.model, LinearHead):
        member.model.save(folder / f"{key}.npz")
        artifacts[key] = str(folder / f"{key}.npz")
        return MemberSpec(member.name, float(member.weight), LINEAR_MEMBER, member.stream, int(member.seq_length),
                          key)
    member.model.save(folder / f"{key}.keras")
    artifacts[key] = str(folder / f"{key}.keras")
    litert = _litert_sequences(member.model, int(member.seq_length), folder / f"{key}.tflite", f"{key}{LITERT_SUFFIX}")
    artifacts.update(litert)
    return MemberSpec(member.name, float(member.weight), KERAS_MEMBER, member.stream, int(member.seq_length), key,
                      next(iter(litert), None))


def _litert_sequences(sequence_model, seq_length: int, file: Path, key: str) -> dict[str, str]:
    """A sequence model's LiteRT form (a CPU predicts without TensorFlow); none where LiteRT is not installed."""
    from videoclf.features.runtime import convert_sequence_model, litert_available

    if not litert_available():
        return {}
    file.write_bytes(convert_sequence_model(sequence_model, seq_length))
    return {key: str(file)}


def _litert_extractor(config, weights, stream: str, folder: Path) -> dict[str, str]:
    """The extractor exactly as it filled the cache, in LiteRT form (int8: the calibrated model itself, not a
    recipe to redo). None where LiteRT is not installed (the model then runs on Keras, as on a GPU)."""
    from videoclf.features.runtime import build_frame_model, litert_available, runtime_cache_dir
    from videoclf.streams import uses_appearance

    out = {}
    if config.extractor.precision == "int8" or (litert_available() and uses_appearance(stream)):
        extractor = config.extractor.model_copy(update={"runtime": "litert"})
        frames = build_frame_model(extractor, config.sampling, weights, runtime_cache_dir())
        name, key = (INT8_EXTRACTOR, INT8_EXTRACTOR_KEY) if config.extractor.precision == "int8" else (
            LITERT_EXTRACTOR, LITERT_EXTRACTOR_KEY)
        (folder / name).write_bytes(frames.flatbuffer)
        out[key] = str(folder / name)
    return out

