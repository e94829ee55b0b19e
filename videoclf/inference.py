"""The registered model: an MLflow pyfunc that takes video files and returns class probabilities.

Everything inference needs travels inside the model: the sequence model, the
frame extractor's weights (saved from the exact extractor that filled the
cache, so no download and no project config are needed), the class list, and
the sampling settings used in training. It loads in a fresh process, offline,
from any working directory, without the feature cache.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

SETTINGS = "settings.json"
ERROR_COLUMN = "error"
LABEL_COLUMN = "predicted_label"
WARNING_COLUMN = "warning"
PATH_COLUMN = "video_path"
BYTES_COLUMN = "video_bytes"
LONG_VIDEO_FACTOR = 4  # warn when a video is this many times longer than the longest training clip
PREDICT_CHUNK = 32  # videos decoded and extracted at a time
ALLOWED_ROOTS_ENV = "VIDEOCLF_ALLOWED_ROOTS"  # os.pathsep-separated folders a served model may read paths from

# When the serving app sets it, a request stops taking new videos at this time.monotonic() value; the rows
# left get an error (the work is bounded, not merely abandoned by a 504). Context variables follow the request
# into the worker thread that runs the prediction.
REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("videoclf_deadline", default=None)


class RequestError(ValueError):
    """The request itself is malformed (no usable column): the whole request is refused with this message."""


@dataclass(frozen=True)
class VideoRequest:
    """One row of a request: a file to read (``path``) or the file's bytes (``data``); ``name`` is echoed back."""

    name: str | None
    path: str | None = None
    data: bytes | None = None
    error: str | None = None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):  # base64 text, when no signature made MLflow decode it
        return base64.b64decode(value, validate=True)
    raise TypeError(f"expected bytes (base64 in JSON). Received: {type(value).__name__}")


def video_requests(model_input: Any) -> list[VideoRequest]:
    """Rows from a DataFrame (or dict of columns) with ``video_path`` and/or ``video_bytes``, a list of paths or
    bytes, or one path. A row with bytes is decoded from them (its ``video_path``, if any, is only its name)."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame({k: np.atleast_1d(v) if not isinstance(v, list) else v
                                    for k, v in model_input.items()})
    if isinstance(model_input, (str, Path, bytes)):
        model_input = [model_input]
    if not isinstance(model_input, pd.DataFrame):
        items = list(model_input)
        return [VideoRequest(None, data=bytes(i)) if isinstance(i, (bytes, bytearray)) else VideoRequest(str(i), str(i))
                for i in items]
    if PATH_COLUMN not in model_input.columns and BYTES_COLUMN not in model_input.columns:
        raise RequestError(f"Expected a '{PATH_COLUMN}' (string) and/or '{BYTES_COLUMN}' (binary; base64 in JSON) "
                           f"column. Received columns: {[str(c) for c in model_input.columns]}")
    paths = model_input[PATH_COLUMN] if PATH_COLUMN in model_input.columns else [None] * len(model_input)
    blobs = model_input[BYTES_COLUMN] if BYTES_COLUMN in model_input.columns else [None] * len(model_input)
    rows = []
    for path, blob in zip(paths, blobs):
        name = None if _missing(path) else str(path)
        if not _missing(blob):
            try:
                rows.append(VideoRequest(name, data=_as_bytes(blob)))
            except (TypeError, ValueError) as exc:
                rows.append(VideoRequest(name, error=f"{BYTES_COLUMN} is not readable: {exc}"))
        elif name is not None:
            rows.append(VideoRequest(name, path=name))
        else:
            rows.append(VideoRequest(None, error=f"empty row: expected {PATH_COLUMN} or {BYTES_COLUMN}"))
    return rows


def serving() -> bool:
    """True inside a model server (MLflow's scoring server sets this; so does ``videoclf serve``)."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    return str(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get() or "").lower() == "true"


def allowed_roots() -> list[Path] | None:
    """Folders a served model may read paths from (resolved); None when any path may be read (in-process use)."""
    raw = os.environ.get(ALLOWED_ROOTS_ENV)
    if raw is None and not serving():
        return None
    return [Path(p).resolve() for p in (raw or "").split(os.pathsep) if p]


def path_refusal(path: str, roots: list[Path] | None) -> str | None:
    """Why a served model will not read ``path`` (None: it may). Symlinks are followed before the check."""
    if roots is None:
        return None
    if not roots:
        return ("this server reads no paths (start it with --allow-root DIR to allow a folder); "
                f"send the file's bytes in {BYTES_COLUMN} instead")
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        return f"path cannot be resolved ({exc})"
    if not any(real.is_relative_to(root) for root in roots):
        return (f"path is outside the folders this server may read ({os.pathsep.join(map(str, roots))}); send "
                f"the file's bytes in {BYTES_COLUMN} instead")
    return None


class VideoClassifier(mlflow.pyfunc.PythonModel):
    """decode → sample → extract → sequence model, with the settings recorded at training time."""

    def load_context(self, context) -> None:
        import keras

        import videoclf.model  # noqa: F401 - registers TemporalCentering for loading
        from videoclf.config import ExtractorConfig, SamplingConfig
        from videoclf.features.extractors import WeightsSource, build_keras_extractor
        from videoclf.features.runtime import frame_model_from_keras

        self.settings = json.loads(Path(context.artifacts["settings"]).read_text())
        self.classes = list(self.settings["classes"])
        self.sampling = SamplingConfig(**self.settings["sampling"])
        extractor_config = ExtractorConfig(**self.settings["extractor"])
        extractor = build_keras_extractor(extractor_config, self.sampling.image_size,
                                          WeightsSource("none", None, "bundled"))
        extractor.load_weights(context.artifacts["extractor_weights"])
        self.frames_model = frame_model_from_keras(extractor, extractor_config, self.sampling.image_size)
        self.sequence_model = keras.saving.load_model(context.artifacts["sequence_model"], compile=False)

    def _encode(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Sampled frames of each clip → cache-equivalent features ``(N, L, D)`` and sampled-frame counts,
        through the same path as extraction (``features.encode``)."""
        from videoclf.features.encode import encode_clips

        out, stored = encode_clips(self.frames_model, clips, self.sampling.max_seq_length)
        # Same precision the sequence model was trained on (the cache's dtype).
        return out.astype(self.settings["cache_dtype"]).astype(np.float32), stored

    def _probabilities(self, features: np.ndarray, stored: np.ndarray) -> np.ndarray:
        from videoclf.features.sample import derive_sequences

        sequences, _ = derive_sequences(features, stored, int(self.settings["seq_length"]))
        return self.sequence_model.predict(sequences, verbose=0)

    def features(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Cache-equivalent features ``(N, L, D)`` and real-frame counts of video files; errors by row."""
        rows = [VideoRequest(str(p), path=str(p)) for p in paths]
        with _video_files(rows) as files:
            features, stored, errors, _ = self._decode_and_encode(files, {})
        return features, stored, errors

    def _decode_and_encode(self, files: list[str | None], errors: dict[int, str]):
        """Decodes each file (rows already in ``errors`` are skipped) until the request's deadline, if any."""
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_sampled

        errors = dict(errors)
        clips: dict[int, np.ndarray] = {}
        durations: dict[int, float] = {}  # seconds
        deadline = REQUEST_DEADLINE.get()
        for row, file in enumerate(files):
            if row in errors:
                continue
            if deadline is not None and time.monotonic() > deadline:
                errors[row] = TIME_LIMIT_ERROR
                continue
            try:
                clip = decode_sampled(file, self.sampling.max_seq_length, self.sampling.image_size, self.sampling.crop)
            except VideoError as exc:
                errors[row] = str(exc)
                continue
            clips[row], durations[row] = clip.frames, clip.n_frames / clip.fps
        features = np.zeros((len(files), self.sampling.max_seq_length, self.frames_model.dim), np.float32)
        stored = np.zeros(len(files), np.int64)
        if clips:
            rows = list(clips)
            features[rows], stored[rows] = self._encode(list(clips.values()))
        return features, stored, errors, durations

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = video_requests(model_input)
        roots = allowed_roots()
        rows = [VideoRequest(r.name, error=refusal) if r.path is not None and (refusal := path_refusal(r.path, roots))
                else r for r in rows]
        windows = window_requests(model_input, params, len(rows))
        if any(w is not None for w in windows):
            tables = [self._predict_windows(row, *w) if w else _whole_video_row(self._predict_chunk([row]))
                      for row, w in zip(rows, windows)]
            return pd.concat(tables, ignore_index=True)
        # Chunks keep memory and temporary files bounded however many videos come in.
        chunks = [self._predict_chunk(rows[i: i + PREDICT_CHUNK]) for i in range(0, len(rows), PREDICT_CHUNK)]
        return pd.concat(chunks, ignore_index=True) if chunks else self._predict_chunk([])

    def _table(self, names: list[str | None], probabilities: np.ndarray, errors: dict[int, str],
               warnings: dict[int, str] | None = None) -> pd.DataFrame:
        table = pd.DataFrame(probabilities, columns=self.classes)
        if errors and serving():  # JSON has no NaN: a row without probabilities says null
            for name in self.classes:
                table[name] = pd.Series([None if i in errors else float(v) for i, v in enumerate(table[name])],
                                        dtype=object)
        table.insert(0, PATH_COLUMN, pd.Series(names, dtype=object))
        # object columns keep None (JSON null) for "no value"; pandas' string dtype would turn it into NaN
        table[LABEL_COLUMN] = pd.Series([None if i in errors else self.classes[int(np.argmax(probabilities[i]))]
                                         for i in range(len(names))], dtype=object)
        table[ERROR_COLUMN] = pd.Series([errors.get(i) for i in range(len(names))], dtype=object)
        table[WARNING_COLUMN] = pd.Series([(warnings or {}).get(i) for i in range(len(names))], dtype=object)
        return table

    def _predict_chunk(self, rows: list[VideoRequest]) -> pd.DataFrame:
        with _video_files(rows) as files:
            features, stored, errors, durations = self._decode_and_encode(
                files, {i: r.error for i, r in enumerate(rows) if r.error})
        errors = {i: _name_sent_bytes(message, rows[i], files[i]) for i, message in errors.items()}
        probabilities = np.full((len(rows), len(self.classes)), np.nan, np.float32)
        good = [i for i in range(len(rows)) if i not in errors]
        if good:
            probabilities[good] = self._probabilities(features[good], stored[good])
        warnings = {i: message for i in good if (message := self.length_warning(durations[i]))}
        return self._table([r.name for r in rows], probabilities, errors, warnings)

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

    def _predict_windows(self, row: VideoRequest, window: float, stride: float) -> pd.DataFrame:
        """One row per time window, then one ``kind=video`` row with the mean over the windows."""
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_windows

        deadline = REQUEST_DEADLINE.get()
        error = row.error or (TIME_LIMIT_ERROR if deadline is not None and time.monotonic() > deadline else None)
        if error is None:
            with _video_files([row]) as (file,):
                try:
                    spans = decode_windows(file, window, stride, self.sampling.max_seq_length,
                                           self.sampling.image_size, self.sampling.crop)
                except VideoError as exc:
                    error = _name_sent_bytes(str(exc), row, file)
        if error is not None:
            return _whole_video_row(self._table([row.name], np.full((1, len(self.classes)), np.nan, np.float32),
                                                {0: error}))
        probabilities = self._probabilities(*self._encode([w.frames for w in spans]))
        probabilities = np.concatenate([probabilities, probabilities.mean(axis=0, keepdims=True)])
        table = self._table([row.name] * len(probabilities), probabilities, {})
        table.insert(1, "kind", ["window"] * len(spans) + ["video"])
        table.insert(2, "window_start", [w.start_seconds for w in spans] + [spans[0].start_seconds])
        table.insert(3, "window_end", [w.end_seconds for w in spans] + [spans[-1].end_seconds])
        return table


TIME_LIMIT_ERROR = ("not processed: the request ran past its time limit; send fewer videos per request or "
                    "raise the server's --timeout")


def _name_sent_bytes(message: str, row: VideoRequest, file: str | None) -> str:
    """Errors about sent bytes name the row as the client knows it, not our temporary file."""
    if row.data is None or not file:
        return message
    return message.replace(file, f"{BYTES_COLUMN} of {row.name}" if row.name else BYTES_COLUMN)


@contextlib.contextmanager
def _video_files(rows: list[VideoRequest]):
    """A file to decode per row (None for rows with an error): the path, or the bytes written to a private
    temporary file that is removed afterwards (OpenCV decodes files, not memory)."""
    files: list[str | None] = []
    with tempfile.TemporaryDirectory(prefix="videoclf-request-") as folder:
        for index, row in enumerate(rows):
            if row.data is not None:
                file = Path(folder) / f"video-{index}"
                file.write_bytes(row.data)
                files.append(str(file))
            else:
                files.append(row.path)
        yield files


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
