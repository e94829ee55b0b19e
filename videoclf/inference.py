"""The registered model: an MLflow pyfunc that takes video files and returns class probabilities.

Everything inference needs travels inside the model: the sequence model, the
frame extractor's weights (saved from the exact extractor that filled the
cache, so no download and no project config are needed), the class list, and
the sampling settings used in training. It loads in a fresh process, offline,
from any working directory, without the feature cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

SETTINGS = "settings.json"
ERROR_COLUMN = "error"
LABEL_COLUMN = "predicted_label"
PREDICT_CHUNK = 32  # videos decoded and extracted at a time


def video_paths(model_input: Any) -> list[str]:
    """Accepts a DataFrame with ``video_path``, a Series, a list of paths, or one path."""
    if isinstance(model_input, pd.DataFrame):
        if "video_path" not in model_input.columns:
            raise ValueError(f"Expected a 'video_path' column. Received columns: {list(model_input.columns)}")
        return [str(p) for p in model_input["video_path"]]
    if isinstance(model_input, (str, Path)):
        return [str(model_input)]
    if isinstance(model_input, dict) and "video_path" in model_input:
        return [str(p) for p in np.atleast_1d(model_input["video_path"])]
    return [str(p) for p in model_input]


class VideoClassifier(mlflow.pyfunc.PythonModel):
    """decode → sample → extract → sequence model, with the settings recorded at training time."""

    def load_context(self, context) -> None:
        import keras

        import videoclf.model  # noqa: F401 - registers TemporalCentering for loading
        from videoclf.config import ExtractorConfig, SamplingConfig
        from videoclf.features.extractors import FrameModel, WeightsSource, build_keras_extractor

        self.settings = json.loads(Path(context.artifacts["settings"]).read_text())
        self.classes = list(self.settings["classes"])
        self.sampling = SamplingConfig(**self.settings["sampling"])
        extractor_config = ExtractorConfig(**self.settings["extractor"])
        extractor = build_keras_extractor(extractor_config, self.sampling.image_size,
                                          WeightsSource("none", None, "bundled"))
        extractor.load_weights(context.artifacts["extractor_weights"])
        self.frames_model = FrameModel(extractor, extractor_config.batch_size, self.sampling.image_size,
                                       int(extractor.output_shape[-1]))
        self.sequence_model = keras.saving.load_model(context.artifacts["sequence_model"], compile=False)

    def features(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Cache-equivalent features ``(N, L, D)`` and real-frame counts; errors by row."""
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_sampled

        length = self.sampling.max_seq_length
        out = np.zeros((len(paths), length, self.frames_model.dim), np.float32)
        stored = np.zeros(len(paths), np.int64)
        errors: dict[int, str] = {}
        clips = {}
        for row, path in enumerate(paths):
            try:
                clips[row] = decode_sampled(path, length, self.sampling.image_size, self.sampling.crop).frames
            except VideoError as exc:
                errors[row] = str(exc)
        if clips:
            frames = np.concatenate(list(clips.values()))
            vectors = np.concatenate([self.frames_model(frames[i: i + self.frames_model.batch_size])
                                      for i in range(0, len(frames), self.frames_model.batch_size)])
            start = 0
            for row, clip in clips.items():
                out[row, : len(clip)] = vectors[start: start + len(clip)]
                stored[row] = len(clip)
                start += len(clip)
        # Same precision the sequence model was trained on (the cache's dtype).
        return out.astype(self.settings["cache_dtype"]).astype(np.float32), stored, errors

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        paths = video_paths(model_input)
        # Chunks keep memory flat however many videos come in (frames are held per chunk only).
        chunks = [self._predict_chunk(paths[i: i + PREDICT_CHUNK]) for i in range(0, len(paths), PREDICT_CHUNK)]
        return pd.concat(chunks, ignore_index=True) if chunks else self._predict_chunk([])

    def _predict_chunk(self, paths: list[str]) -> pd.DataFrame:
        from videoclf.features.sample import derive_sequences

        features, stored, errors = self.features(paths)
        sequences, _ = derive_sequences(features, stored, int(self.settings["seq_length"]))
        probabilities = np.full((len(paths), len(self.classes)), np.nan, np.float32)
        good = [i for i in range(len(paths)) if i not in errors]
        if good:
            probabilities[good] = self.sequence_model.predict(sequences[good], verbose=0)
        table = pd.DataFrame(probabilities, columns=self.classes)
        table.insert(0, "video_path", paths)
        # object columns keep None (JSON null) for "no value"; pandas' string dtype would turn it into NaN
        table[LABEL_COLUMN] = pd.Series([None if i in errors else self.classes[int(np.argmax(probabilities[i]))]
                                         for i in range(len(paths))], dtype=object)
        table[ERROR_COLUMN] = pd.Series([errors.get(i) for i in range(len(paths))], dtype=object)
        return table


def sampled_frames(path: str, settings: dict) -> np.ndarray:
    """The RGB frames the model looks at for ``path`` (for GIFs)."""
    from videoclf.features.decode import decode_sampled
    from videoclf.features.sample import derived_positions

    clip = decode_sampled(path, settings["sampling"]["max_seq_length"], settings["sampling"]["image_size"],
                          settings["sampling"]["crop"])
    positions = derived_positions(len(clip.frames), settings["sampling"]["max_seq_length"], settings["seq_length"])
    return clip.frames[positions]


def load_settings(model) -> dict:
    """The training-time settings of a loaded pyfunc model."""
    return model.unwrap_python_model().settings
