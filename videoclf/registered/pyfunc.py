"""The registered model at work: decode → sample → extract → sequence model, with its training-time settings.

It loads in a fresh process, offline, from any working directory, without the feature
cache; rows are parsed and policed by ``videoclf.registered.requests``. A model trained on
several views of each video (``sampling.views``) answers with the mean over the same views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from videoclf.registered.format import (
    EXTRACTOR_WEIGHTS_KEY,
    INT8_EXTRACTOR_KEY,
    LINEAR_MEMBER,
    LITERT_EXTRACTOR_KEY,
    LITERT_SEQUENCE_MODEL_KEY,
    SEQUENCE_MODEL_KEY,
    SETTINGS_KEY,
    ModelSettings,
)
from videoclf.registered.requests import (
    TIME_LIMIT_ERROR,
    VideoRequest,
    allowed_roots,
    name_sent_bytes,
    past_deadline,
    path_refusal,
    serving,
    video_files,
    video_requests,
    window_requests,
)
from videoclf.registered.wire import (
    ERROR_COLUMN,
    KIND_COLUMN,
    LABEL_COLUMN,
    PATH_COLUMN,
    WARNING_COLUMN,
    WINDOW_END_COLUMN,
    WINDOW_START_COLUMN,
)
from videoclf.features.views import PLAIN, View, view, views
from videoclf.streams import stream_sequences, uses_appearance, uses_motion

LONG_VIDEO_FACTOR = 4  # warn when a video is this many times longer than the longest training clip
PREDICT_CHUNK = 32  # videos decoded and extracted at a time


class VideoClassifier(mlflow.pyfunc.PythonModel):
    """decode → sample → extract → sequence model, with the settings recorded at training time."""

    def load_context(self, context) -> None:
        """On a CPU with LiteRT and a model that carries LiteRT forms, neither TensorFlow nor Keras is imported;
        elsewhere (a GPU, or a model registered before the LiteRT forms) the Keras models run."""
        from videoclf.features.runtime import choose_runtime

        from videoclf.registered.integrity import checked_artifacts
        from videoclf.tempfiles import sweep_stale

        sweep_stale()  # what killed requests left in the temp folder
        self.settings = ModelSettings.from_json(Path(context.artifacts[SETTINGS_KEY]).read_text())
        self.classes = list(self.settings.classes)
        self.sampling = self.settings.sampling
        extractor = self.settings.extractor
        self.runtime = choose_runtime(extractor.runtime, extractor.precision)
        # every file checked against its recorded digest: a damaged LiteRT form is dropped (its Keras form runs)
        artifacts = checked_artifacts(context.artifacts, self.settings.artifact_digests or {},
                                      str(Path(context.artifacts[SETTINGS_KEY]).parent.parent))
        # a motion-only model never runs the frame extractor: it is not even loaded
        self.frames_model = self._frame_model(artifacts) if uses_appearance(self.settings.stream) else None
        self.members = self._members(artifacts)

    def _members(self, artifacts: dict) -> list[tuple[float, object]]:
        """``(weight, clips → probabilities)`` for each model the registered model averages; one sequence model
        (weight 1) for a model registered alone, as every model before selection rules."""
        settings = self.settings
        if not settings.members:
            sequences = self._sequence_model(artifacts, SEQUENCE_MODEL_KEY, LITERT_SEQUENCE_MODEL_KEY)
            return [(1.0, self._reading(settings.stream, settings.seq_length, sequences))]
        out = []
        for member in settings.members:
            if member.kind == LINEAR_MEMBER:
                from videoclf.summaries import LinearHead

                head = LinearHead.load(artifacts[member.artifact])
                out.append((member.weight, lambda clips, head=head: head.probabilities(
                    clips.features, clips.stored, clips.motion, clips.motion_valid)))
            else:
                sequences = self._sequence_model(artifacts, member.artifact, member.litert_artifact)
                out.append((member.weight, self._reading(member.stream, member.seq_length, sequences)))
        return out

    @staticmethod
    def _reading(stream: str, length: int, sequences):
        """Cache-equivalent clips → ``sequences``' input (``stream`` at ``length``) → probabilities."""
        return lambda clips: sequences(stream_sequences(stream, length, clips.stored, clips.features, clips.motion,
                                                        clips.motion_valid))

    def _sequence_model(self, artifacts: dict, keras_key: str, litert_key: str | None):
        """``clips (N, seq_length, width)`` → probabilities: LiteRT where this machine runs it, else Keras."""
        if self.runtime == "litert" and litert_key in artifacts:
            from videoclf.features.runtime import LiteRTSequences

            loaded = _litert_or_none(lambda: LiteRTSequences(Path(artifacts[litert_key]).read_bytes()),
                                     artifacts[litert_key])
            if loaded is not None:
                return loaded
        from videoclf.console import quiet_tensorflow

        quiet_tensorflow()
        import keras

        import videoclf.model  # noqa: F401 - registers the custom layers for loading

        model = keras.saving.load_model(artifacts[keras_key], compile=False)
        return lambda clips: model.predict(clips, verbose=0)

    def _frame_model(self, artifacts: dict):
        """The bundled LiteRT extractor (int8: always; float: where this machine runs LiteRT) as is; else the
        bundled extractor weights on the runtime chosen here, converted once per machine (the runtime cache is
        keyed by the weights' digest: extraction's conversion is reused)."""
        from videoclf.features.backbones import FEATURE_DIMS, WeightsSource, build_keras_extractor
        from videoclf.features.runtime import LiteRTFrames, build_frame_model, runtime_cache_dir

        config = self.settings.extractor
        if artifacts.get(INT8_EXTRACTOR_KEY):  # the calibrated model itself: nothing else gives its features
            return LiteRTFrames(Path(artifacts[INT8_EXTRACTOR_KEY]).read_bytes(), config.batch_size,
                                FEATURE_DIMS[config.name])
        bundled_litert = artifacts.get(LITERT_EXTRACTOR_KEY) if self.runtime == "litert" else None
        if bundled_litert:
            loaded = _litert_or_none(lambda: LiteRTFrames(Path(bundled_litert).read_bytes(), config.batch_size,
                                                          FEATURE_DIMS[config.name]), bundled_litert)
            if loaded is not None:
                return loaded

        def bundled():
            extractor = build_keras_extractor(config, self.sampling.image_size, WeightsSource("none", None, "bundled"))
            extractor.load_weights(artifacts[EXTRACTOR_WEIGHTS_KEY])
            return extractor

        recorded = self.settings.extractor_weights or {}
        weights = WeightsSource(recorded.get("kind", "bundled"), None, recorded.get("digest") or "bundled")
        # a model registered before the digest was recorded converts on every load, as it always did
        cache_dir = runtime_cache_dir() if recorded.get("digest") else None
        return build_frame_model(config, self.sampling, weights, cache_dir, keras_extractor=bundled)

    def _encode(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Sampled frames of each clip → cache-equivalent features ``(N, L, D)`` and sampled-frame counts,
        through the same path as extraction (``features.encode``)."""
        from videoclf.features.encode import encode_clips

        out, stored = encode_clips(self.frames_model, clips, self.sampling.max_seq_length)
        # Same precision the sequence model was trained on (the cache's dtype).
        return out.astype(self.settings.cache_dtype).astype(np.float32), stored

    @property
    def _feature_dim(self) -> int:
        from videoclf.features.backbones import FEATURE_DIMS

        return FEATURE_DIMS[self.settings.extractor.name]

    def _motion_describer(self):
        """The flow recipe the motion stream was cached with, when the model reads it (one per call: not shared
        between threads)."""
        from videoclf.features.motion import FlowDescriber

        return FlowDescriber.from_config(self.settings.motion) if uses_motion(self.settings.stream) else None

    def _probabilities(self, clips: "_Clips") -> np.ndarray:
        """The members' weighted mean (one member: its own probabilities, untouched)."""
        if len(self.members) == 1:
            return self.members[0][1](clips)
        return sum(weight * np.asarray(predict(clips), np.float64) for weight, predict in self.members
                   ).astype(np.float32)

    def features(self, paths: list[str], view_index: int = 0) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Cache-equivalent features ``(N, L, D)`` and real-frame counts of video files; errors by row."""
        clips, errors = self.streams(paths, view_index)
        return clips.features, clips.stored, errors

    def streams(self, paths: list[str], view_index: int = 0) -> tuple["_Clips", dict[int, str]]:
        """Every stream the model reads, cache-equivalent (the view ``view_index``'s), for video files (errors by
        row)."""
        rows = [VideoRequest(str(p), path=str(p)) for p in paths]
        with video_files(rows) as files:
            clips, errors, _ = self._decode_and_encode(files, {}, view(view_index))
        return clips, errors

    def _decode_and_encode(self, files: list[str | None], errors: dict[int, str], shown: View = PLAIN):
        """Decodes each file as ``shown`` shows it (rows already in ``errors`` are skipped) until the request's
        deadline, if any; the frame model runs only when the sequence model reads appearance."""
        from videoclf.errors import VideoError
        from videoclf.features.decode import decode_sampled

        errors = dict(errors)
        decoded: dict[int, object] = {}
        lengths: dict[int, tuple[int, float]] = {}  # decoded frames, seconds
        appearance, describer = uses_appearance(self.settings.stream), self._motion_describer()
        for row, file in enumerate(files):
            if row in errors:
                continue
            if past_deadline():
                errors[row] = TIME_LIMIT_ERROR
                continue
            try:
                clip = decode_sampled(file, self.sampling.max_seq_length, self.sampling.image_size, self.sampling.crop,
                                      describer, frames=appearance, view=shown)
            except VideoError as exc:
                errors[row] = str(exc)
                continue
            decoded[row], lengths[row] = clip, (clip.n_frames, clip.n_frames / clip.fps)
        clips = _Clips.empty(len(files), self.sampling.max_seq_length, self._feature_dim,
                             describer.size if describer else None)
        rows = list(decoded)
        for row, clip in decoded.items():
            clips.stored[row] = clip.count
            clips.put_motion(row, clip.motion, clip.motion_valid)
        if rows and appearance:
            clips.features[rows], _ = self._encode([decoded[r].frames for r in rows])
        return clips, errors, lengths

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = video_requests(model_input)
        roots = allowed_roots()
        rows = [VideoRequest(r.name, error=refusal) if r.path is not None and (refusal := path_refusal(r.path, roots))
                else r for r in rows]
        windows = window_requests(model_input, params, len(rows))
        rows = [VideoRequest(r.name, error=w) if isinstance(w, str) and r.error is None else r
                for r, w in zip(rows, windows)]
        windows = [None if isinstance(w, str) else w for w in windows]
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
        errors, every, lengths = {i: r.error for i, r in enumerate(rows) if r.error}, [], None
        with video_files(rows) as files:
            for shown in views(self.sampling.views):  # a row failing in any view fails
                clips, errors, decoded = self._decode_and_encode(files, errors, shown)
                every.append(clips)
                lengths = lengths if lengths is not None else decoded
        errors = {i: name_sent_bytes(message, rows[i], files[i]) for i, message in errors.items()}
        probabilities = np.full((len(rows), len(self.classes)), np.nan, np.float32)
        good = [i for i in range(len(rows)) if i not in errors]
        if good:
            probabilities[good] = _mean([self._probabilities(clips.rows(good)) for clips in every])
        warnings = {i: message for i in good if (message := self.length_warning(*lengths[i]))}
        return self._table([r.name for r in rows], probabilities, errors, warnings)

    def length_warning(self, frames: int, seconds: float) -> str | None:
        """Says so when a video (``frames`` decoded, ``seconds`` long) is a single frame, or far longer than the
        clips the model was trained on."""
        if frames < 2:
            return ("only 1 frame decoded: nothing moves in it (no motion, no change between frames), so the "
                    "prediction rests on a single picture")
        trained = self.settings.training_clips
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

        error = row.error or (TIME_LIMIT_ERROR if past_deadline() else None)
        every = []  # each view's windows (the same spans in every view)
        if error is None:
            with video_files([row]) as (file,):
                for shown in views(self.sampling.views):
                    try:
                        every.append(decode_windows(file, window, stride, self.sampling.max_seq_length,
                                                    self.sampling.image_size, self.sampling.crop,
                                                    self._motion_describer(), shown))
                    except VideoError as exc:
                        error = name_sent_bytes(str(exc), row, file)
                        break
        if error is not None:
            return _whole_video_row(self._table([row.name], np.full((1, len(self.classes)), np.nan, np.float32),
                                                {0: error}))
        spans = every[0]
        probabilities = _mean([self._probabilities(self._window_clips(shown)) for shown in every])
        probabilities = np.concatenate([probabilities, probabilities.mean(axis=0, keepdims=True)])
        table = self._table([row.name] * len(probabilities), probabilities, {})
        table.insert(1, KIND_COLUMN, ["window"] * len(spans) + ["video"])
        table.insert(2, WINDOW_START_COLUMN, [w.start_seconds for w in spans] + [spans[0].start_seconds])
        table.insert(3, WINDOW_END_COLUMN, [w.end_seconds for w in spans] + [spans[-1].end_seconds])
        return table


    def _window_clips(self, spans) -> "_Clips":
        """One view's windows as cache-equivalent clips."""
        clips = _Clips.empty(len(spans), self.sampling.max_seq_length, self._feature_dim,
                             spans[0].motion.shape[-1] if spans[0].motion is not None else None)
        if uses_appearance(self.settings.stream):
            clips.features[:], clips.stored[:] = self._encode([w.frames for w in spans])
        else:
            clips.stored[:] = [len(w.frames) for w in spans]
        for index, span in enumerate(spans):
            clips.put_motion(index, span.motion, span.motion_valid)
        return clips


def _litert_or_none(load, path: str):
    """A LiteRT form loaded, or None with one warning naming the file when LiteRT refuses it (a damaged file in a
    model registered before artifact digests were recorded): the caller runs the Keras form instead."""
    from videoclf.registered.integrity import LOG

    try:
        return load()
    except (ValueError, RuntimeError) as exc:
        LOG.warning("%s cannot be loaded by LiteRT (%s); running its Keras form instead (slower on a CPU). Register "
                    "the model again, or copy its artifacts again, to get it back.", path,
                    (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        return None


def _mean(per_view: list[np.ndarray]) -> np.ndarray:
    """Probabilities averaged over views (one view: untouched)."""
    if len(per_view) == 1:
        return per_view[0]
    return np.mean([np.asarray(p, np.float64) for p in per_view], axis=0).astype(np.float32)


@dataclass
class _Clips:
    """Cache-equivalent arrays of a batch of clips: features ``(N, L, D)``, sampled-frame counts, and the motion
    stream ``(N, L, M)`` with its step flags when the model reads it."""

    features: np.ndarray
    stored: np.ndarray
    motion: np.ndarray | None
    motion_valid: np.ndarray | None

    @classmethod
    def empty(cls, count: int, length: int, dim: int, motion_dim: int | None) -> "_Clips":
        return cls(np.zeros((count, length, dim), np.float32), np.zeros(count, np.int64),
                   None if motion_dim is None else np.zeros((count, length, motion_dim), np.float32),
                   None if motion_dim is None else np.zeros((count, length), bool))

    def put_motion(self, row: int, motion: np.ndarray | None, valid: np.ndarray | None) -> None:
        """One clip's motion steps (none when the model does not read motion)."""
        if motion is not None:
            self.motion[row, : len(motion)], self.motion_valid[row, : len(motion)] = motion, valid

    def rows(self, rows: list[int]) -> "_Clips":
        return _Clips(self.features[rows], self.stored[rows], None if self.motion is None else self.motion[rows],
                      None if self.motion_valid is None else self.motion_valid[rows])


def _whole_video_row(table: pd.DataFrame) -> pd.DataFrame:
    """A whole-video row in a windowed answer: ``kind=video`` and no window span (JSON null)."""
    table.insert(1, KIND_COLUMN, "video")
    table.insert(2, WINDOW_START_COLUMN, pd.Series([None] * len(table), dtype=object))
    table.insert(3, WINDOW_END_COLUMN, pd.Series([None] * len(table), dtype=object))
    return table


def sampled_frames(path: str, settings: ModelSettings) -> np.ndarray:
    """The RGB frames the model looks at for ``path`` (for GIFs)."""
    from videoclf.features.decode import decode_sampled
    from videoclf.features.sample import derived_positions

    sampling = settings.sampling
    clip = decode_sampled(path, sampling.max_seq_length, sampling.image_size, sampling.crop)
    positions = derived_positions(len(clip.frames), sampling.max_seq_length, settings.seq_length)
    return clip.frames[positions]
