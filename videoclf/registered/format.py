"""The registered model's format: its recorded settings, its signature, its requirements, and reading them back.

Everything inference needs travels inside the model (``videoclf.registered.writer``):
the sequence model, the frame extractor's weights, the class list and the settings
used in training (``ModelSettings``, ``settings.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

from videoclf.config import ExtractorConfig, MotionConfig, SamplingConfig
from videoclf.registered.wire import (
    BYTES_COLUMN,
    ERROR_COLUMN,
    KIND_COLUMN,
    LABEL_COLUMN,
    PATH_COLUMN,
    STRIDE_COLUMN,
    WARNING_COLUMN,
    WINDOW_COLUMN,
    WINDOW_END_COLUMN,
    WINDOW_START_COLUMN,
)
from videoclf.versions import installed_versions
from videoclf.streams import APPEARANCE

SETTINGS = "settings.json"
# The pyfunc's artifact keys: written by ``writer``, read by ``pyfunc``, checked by ``integrity``.
SETTINGS_KEY = "settings"
EXTRACTOR_WEIGHTS_KEY = "extractor_weights"
SEQUENCE_MODEL_KEY = "sequence_model"
LITERT_SEQUENCE_MODEL_KEY = "litert_sequence_model"
LITERT_EXTRACTOR_KEY = "litert_extractor"
INT8_EXTRACTOR_KEY = "int8_extractor"
MEMBER_PREFIX = "member_"  # member i's Keras model or linear head: "member_<i>"
LITERT_SUFFIX = "_litert"  # a member's LiteRT form: "member_<i>_litert" beside "member_<i>"
INT8_EXTRACTOR = "extractor.int8.tflite"
LITERT_EXTRACTOR = "extractor.tflite"  # the float extractor as converted for LiteRT (CPU inference without TensorFlow)
LITERT_SEQUENCES = "sequence_model.tflite"  # the sequence model likewise (Keras' stays beside it: the GPU path)


@dataclass(frozen=True)
class ModelSettings:
    """What the model needs besides its weights, as recorded at training time (``settings.json``)."""

    classes: tuple[str, ...]
    seq_length: int
    sampling: SamplingConfig
    extractor: ExtractorConfig
    cache_dtype: str
    extractor_weights: dict  # kind and digest of the weights that filled the cache
    training_clips: dict | None = None  # median/max length of the training clips, in frames and seconds
    stream: str = APPEARANCE  # which cached streams the sequence model reads (videoclf.streams)
    motion: MotionConfig = MotionConfig()  # how the motion stream was computed, when the stream reads it
    # several models averaged (videoclf.search.select): each a MemberSpec; none: the one sequence model
    members: tuple["MemberSpec", ...] = ()
    # artifact key -> file name, size and digest when written (videoclf.registered.integrity); none before them
    artifact_digests: dict | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data.update(classes=list(self.classes), sampling=self.sampling.model_dump(mode="json"),
                    extractor=self.extractor.model_dump(mode="json"), motion=self.motion.model_dump(mode="json"),
                    members=[asdict(m) for m in self.members])
        if not self.members:
            data.pop("members")  # a one-model settings file reads as it always did
        if not self.artifact_digests:
            data.pop("artifact_digests")
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelSettings:
        data = json.loads(text)  # models registered before the motion stream read appearance only
        return cls(tuple(data["classes"]), int(data["seq_length"]), SamplingConfig(**data["sampling"]),
                   ExtractorConfig(**data["extractor"]), data["cache_dtype"], data.get("extractor_weights") or {},
                   data.get("training_clips"), data.get("stream", APPEARANCE), MotionConfig(**data.get("motion", {})),
                   tuple(MemberSpec(**m) for m in data.get("members", ())), data.get("artifact_digests"))


@dataclass(frozen=True)
class MemberSpec:
    """One model of a registered model that averages several: what it reads, its weight, its artifacts."""

    name: str  # e.g. "trial 3", "baseline step_stats_logreg"
    weight: float
    kind: str  # KERAS_MEMBER or LINEAR_MEMBER
    stream: str
    seq_length: int
    artifact: str  # the artifact key of its Keras model or its LinearHead arrays
    litert_artifact: str | None = None  # a Keras member's LiteRT form, where it was converted


KERAS_MEMBER = "keras"
LINEAR_MEMBER = "linear"  # videoclf.summaries.LinearHead


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged model (inference needs no tuner or tracking server)."""
    versions = installed_versions(("tensorflow", "keras", "mlflow", "opencv-python-headless", "numpy", "pandas",
                                   "h5py", "pydantic", "pyyaml", "filelock", "tqdm", "ai-edge-litert"))
    return [f"{name}=={value}" for name, value in versions.items()]


def video_signature(classes) -> ModelSignature:
    """What the served model takes and returns, shown in the registry UI; MLflow decodes base64 ``video_bytes``.

    Every input column is optional: a row gives ``video_path`` or ``video_bytes`` (then the path is only its
    name), optionally with ``window_seconds`` / ``stride_seconds``, which may also come as params for every row.
    Outputs: a probability per class (null where the row failed), the predicted label, the row's error and warning,
    and the window columns.
    """
    inputs = [ColSpec(DataType.string, PATH_COLUMN, required=False),
              ColSpec(DataType.binary, BYTES_COLUMN, required=False),
              ColSpec(DataType.double, WINDOW_COLUMN, required=False),
              ColSpec(DataType.double, STRIDE_COLUMN, required=False)]
    outputs = [ColSpec(DataType.string, PATH_COLUMN, required=False),
               *[ColSpec(DataType.double, str(c), required=False) for c in classes],
               ColSpec(DataType.string, LABEL_COLUMN, required=False),
               ColSpec(DataType.string, ERROR_COLUMN, required=False),
               ColSpec(DataType.string, WARNING_COLUMN, required=False),
               ColSpec(DataType.string, KIND_COLUMN, required=False),
               ColSpec(DataType.double, WINDOW_START_COLUMN, required=False),
               ColSpec(DataType.double, WINDOW_END_COLUMN, required=False)]
    params = ParamSchema([ParamSpec(WINDOW_COLUMN, DataType.double, None),
                          ParamSpec(STRIDE_COLUMN, DataType.double, None)])
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def sequence_signature(num_features: int, num_classes: int) -> ModelSignature:
    """The bare sequence model's: batch and time are variable (-1), so any sequence length works."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, num_features), "features")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes), "probabilities")]))


def load_settings(model) -> ModelSettings:
    """The training-time settings of a loaded pyfunc model."""
    return model.unwrap_python_model().settings
