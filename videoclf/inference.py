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
WARNING_COLUMN = "warning"
LONG_VIDEO_FACTOR = 4  # warn when a video is this many times longer than the longest training clip
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

    def _encode(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Sampled frames of each clip → cache-equivalent features ``(N, L, D)`` and real-frame counts."""
        length = self.sampling.max_seq_length
        out = np.zeros((len(clips), length, self.frames_model.dim), np.float32)
        stored = np.array([len(c) for c in clips], np.int64)
        if clips:
            frames = np.concatenate(clips)
            batch = self.frames_model.batch_size
            vectors = np.concatenate([self.frames_model(frames[i: i + batch]) for i in range(0, len(frames), batch)])
            for row, (start, count) in enumerate(zip(np.cumsum(stored) - stored, stored)):
                out[row, :count] = vectors[start: start + count]
        # Same precision the sequence model was trained on (the cache's dtype).
        return out.astype(self.settings["cache_dtype"]).astype(np.float32), stored

    def _probabilities(self, features: np.ndarray, stored: np.ndarray) -> np.ndarray:
        from videoclf.features.sample import derive_sequences

        sequences, _ = derive_sequences(features, stored, int(self.settings["seq_length"]))
        return self.sequence_model.predict(sequences, verbose=0)

    def features(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Cache-equivalent features ``(N, L, D)`` and real-frame counts; errors by row."""
        features, stored, errors, _ = self._decode_and_encode(paths)
        return features, stored, errors

    def _decode_and_encode(self, paths: list[str]):
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_sampled

        errors: dict[int, str] = {}
        clips: dict[int, np.ndarray] = {}
        durations: dict[int, float] = {}  # seconds
        for row, path in enumerate(paths):
            try:
                clip = decode_sampled(path, self.sampling.max_seq_length, self.sampling.image_size, self.sampling.crop)
            except VideoError as exc:
                errors[row] = str(exc)
                continue
            clips[row], durations[row] = clip.frames, clip.n_frames / clip.fps
        features = np.zeros((len(paths), self.sampling.max_seq_length, self.frames_model.dim), np.float32)
        stored = np.zeros(len(paths), np.int64)
        if clips:
            rows = list(clips)
            features[rows], stored[rows] = self._encode(list(clips.values()))
        return features, stored, errors, durations

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        paths = video_paths(model_input)
        windows = window_requests(model_input, params, len(paths))
        if any(w is not None for w in windows):
            tables = [self._predict_windows(path, *w) if w else _whole_video_row(self._predict_chunk([path]))
                      for path, w in zip(paths, windows)]
            return pd.concat(tables, ignore_index=True)
        # Chunks keep memory flat however many videos come in (frames are held per chunk only).
        chunks = [self._predict_chunk(paths[i: i + PREDICT_CHUNK]) for i in range(0, len(paths), PREDICT_CHUNK)]
        return pd.concat(chunks, ignore_index=True) if chunks else self._predict_chunk([])

    def _table(self, paths: list[str], probabilities: np.ndarray, errors: dict[int, str],
               warnings: dict[int, str] | None = None) -> pd.DataFrame:
        table = pd.DataFrame(probabilities, columns=self.classes)
        table.insert(0, "video_path", paths)
        # object columns keep None (JSON null) for "no value"; pandas' string dtype would turn it into NaN
        table[LABEL_COLUMN] = pd.Series([None if i in errors else self.classes[int(np.argmax(probabilities[i]))]
                                         for i in range(len(paths))], dtype=object)
        table[ERROR_COLUMN] = pd.Series([errors.get(i) for i in range(len(paths))], dtype=object)
        table[WARNING_COLUMN] = pd.Series([(warnings or {}).get(i) for i in range(len(paths))], dtype=object)
        return table

    def _predict_chunk(self, paths: list[str]) -> pd.DataFrame:
        features, stored, errors, durations = self._decode_and_encode(paths)
        probabilities = np.full((len(paths), len(self.classes)), np.nan, np.float32)
        good = [i for i in range(len(paths)) if i not in errors]
        if good:
            probabilities[good] = self._probabilities(features[good], stored[good])
        warnings = {i: message for i in good if (message := self.length_warning(durations[i]))}
        return self._table(paths, probabilities, errors, warnings)

    def length_warning(self, seconds: float) -> str | None:
        """Says so when a video (``seconds`` long) is far longer than the clips the model was trained on."""
        trained = self.settings.get("training_clips")
        if not trained:
            return None
        if seconds <= LONG_VIDEO_FACTOR * trained["max_seconds"]:
            return None
        return (f"{seconds:.0f} s long, but the model was trained on clips of {trained['median_seconds']:.1f} s "
                f"(at most {trained['max_seconds']:.1f} s): its frames are spread over the whole video; predict "
                f"over windows instead (videoclf predict VIDEO --window {trained['median_seconds']:.1f})")

    def _predict_windows(self, path: str, window: float, stride: float) -> pd.DataFrame:
        """One row per time window, then one ``kind=video`` row with the mean over the windows."""
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_windows

        try:
            spans = decode_windows(path, window, stride, self.sampling.max_seq_length, self.sampling.image_size,
                                   self.sampling.crop)
        except VideoError as exc:
            return _whole_video_row(self._table([path], np.full((1, len(self.classes)), np.nan, np.float32),
                                                {0: str(exc)}))
        probabilities = self._probabilities(*self._encode([w.frames for w in spans]))
        probabilities = np.concatenate([probabilities, probabilities.mean(axis=0, keepdims=True)])
        table = self._table([path] * len(probabilities), probabilities, {})
        table.insert(1, "kind", ["window"] * len(spans) + ["video"])
        table.insert(2, "window_start", [w.start_seconds for w in spans] + [spans[0].start_seconds])
        table.insert(3, "window_end", [w.end_seconds for w in spans] + [spans[-1].end_seconds])
        return table


def _whole_video_row(table: pd.DataFrame) -> pd.DataFrame:
    """A whole-video row in a windowed answer: ``kind=video`` and no window span (JSON null)."""
    table.insert(1, "kind", "video")
    table.insert(2, "window_start", pd.Series([None] * len(table), dtype=object))
    table.insert(3, "window_end", pd.Series([None] * len(table), dtype=object))
    return table


def window_requests(model_input: Any, params: dict | None, count: int) -> list[tuple[float, float] | None]:
    """Per row: ``(window, stride)`` seconds, from ``window_seconds`` / ``stride_seconds`` columns or params;
    None where the whole video is wanted. The stride defaults to the window (no overlap)."""
    params = params or {}
    windows = [params.get("window_seconds")] * count
    strides = [params.get("stride_seconds")] * count
    if isinstance(model_input, pd.DataFrame):
        if "window_seconds" in model_input.columns:
            windows = list(model_input["window_seconds"])
        if "stride_seconds" in model_input.columns:
            strides = list(model_input["stride_seconds"])
    out = []
    for window, stride in zip(windows, strides):
        if window is None or pd.isna(window) or float(window) <= 0:
            out.append(None)
        else:
            stride = float(window) if stride is None or pd.isna(stride) else float(stride)
            out.append((float(window), stride))
    return out


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
