"""The motion stream: descriptor signs and scale, its cache beside appearance, every family on every stream."""

from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from videoclf.config import load_config
from videoclf.features.decode import decode_sampled, decode_windows
from videoclf.features.motion import FlowDescriber, clip_statistics, descriptor_names, descriptor_size
from videoclf.model import FAMILIES, build_sequence_model, seed_ensemble
from videoclf.streams import STREAMS, stream_sequences, stream_width

from conftest import MODEL, write_csv

NAMES = descriptor_names(2)


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture twice the frame's size (flow needs texture; smooth so it survives resizing)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3)).astype(np.uint8)
    return cv2.resize(coarse, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)


def write_motion_video(path: Path, kind: str, size=(320, 240), n_frames: int = 20, seed: int = 0) -> Path:
    """A camera over a textured picture: the picture moves right (``right``), stays (``still``), grows (``zoom_in``)
    or turns counter-clockwise on screen (``turn``)."""
    width, height = size
    picture = _texture(height, width, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    for t in range(n_frames):
        if kind == "right":
            left = int(width // 2 - t * width * 0.01)
            frame = picture[height // 2: height // 2 + height, left: left + width]
        else:
            scale, angle = {"still": (1.0, 0.0), "zoom_in": (1 + 0.02 * t, 0.0), "turn": (1.0, 1.0 * t)}[kind]
            turned = cv2.warpAffine(picture, cv2.getRotationMatrix2D((width, height), angle, scale),
                                    (2 * width, 2 * height))
            frame = turned[height // 2: height // 2 + height, width // 2: width // 2 + width]
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return path


def _mean_step(path: Path) -> dict[str, float]:
    clip = decode_sampled(path, 8, 64, motion=FlowDescriber())
    assert clip.motion_valid.all()  # every sampled frame of these clips has a successor
    return dict(zip(NAMES, clip.motion[clip.motion_valid].mean(axis=0).tolist()))


@pytest.fixture(scope="module")
def motion_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    return {(kind, size): write_motion_video(root / f"{kind}-{size[0]}.avi", kind, size)
            for kind in ("right", "still", "zoom_in", "turn") for size in ((320, 240), (640, 480))}


def test_descriptor_signs_follow_the_motion(motion_videos):
    right, still = _mean_step(motion_videos["right", (320, 240)]), _mean_step(motion_videos["still", (320, 240)])
    zoom, turn = _mean_step(motion_videos["zoom_in", (320, 240)]), _mean_step(motion_videos["turn", (320, 240)])
    assert right["dx"] == pytest.approx(0.01, rel=0.3) and abs(right["dy"]) < 0.1 * right["dx"]  # 1% of a width
    assert abs(right["divergence"]) < 0.2 * right["dx"]
    assert max(abs(v) for v in still.values()) < 1e-3
    assert zoom["divergence"] > 0.01 and zoom["radial"] > 0.005 and abs(zoom["dx"]) < 0.1 * zoom["radial"]
    assert turn["curl"] > 0.005 and abs(turn["divergence"]) < 0.3 * turn["curl"]
    assert right["hof_0"] > 0.9 * right["magnitude_mean"]  # orientation bin of "rightwards" holds the motion


def test_descriptor_is_the_same_at_two_resolutions(motion_videos):
    for kind in ("right", "zoom_in", "turn"):
        small, large = _mean_step(motion_videos[kind, (320, 240)]), _mean_step(motion_videos[kind, (640, 480)])
        scale = max(abs(v) for v in small.values())
        for name in ("dx", "dy", "magnitude_mean", "divergence", "curl", "radial"):
            assert small[name] == pytest.approx(large[name], abs=0.15 * scale), (kind, name)


def test_a_sampled_frame_without_successor_is_masked(tmp_path):
    video = write_motion_video(tmp_path / "short.avi", "right", (64, 48), n_frames=5)
    clip = decode_sampled(video, 8, 32, motion=FlowDescriber())
    assert clip.count == 5 and clip.motion_valid.tolist() == [True] * 4 + [False]
    assert not clip.motion[4].any()
    only_motion = decode_sampled(video, 8, 32, motion=FlowDescriber(), frames=False)
    assert only_motion.frames is None
    np.testing.assert_array_equal(only_motion.motion, clip.motion)
    windows = decode_windows(video, 0.08, 0.08, 2, 32, motion=FlowDescriber())  # 2-frame windows: 0-1, 2-3, 3-4
    assert [(w.start_frame, w.end_frame) for w in windows] == [(0, 2), (2, 4), (3, 5)]
    for window in windows:  # a window's steps are the clip's own: the successor may lie past the window's end
        np.testing.assert_array_equal(window.motion_valid, clip.motion_valid[window.start_frame: window.end_frame])
        np.testing.assert_allclose(window.motion, clip.motion[window.start_frame: window.end_frame], atol=1e-6)


def test_clip_statistics_see_direction_and_trend():
    steps = np.zeros((6, descriptor_size(2)), np.float32)
    steps[:3, 0], steps[3:5, 0] = 1.0, 3.0  # speeding up; the last step does not exist
    valid = np.array([True] * 5 + [False])
    stats = clip_statistics(steps, valid)
    size = steps.shape[1]
    assert stats[0] == pytest.approx(1.8) and stats[2 * size] == pytest.approx(1.0 - 7 / 3)


def test_adding_motion_to_an_existing_cache_runs_no_cnn(tmp_path, monkeypatch):
    import videoclf.features.extract as extract
    from videoclf.data.videos import split_videos
    from videoclf.dataset import load_split
    from videoclf.features.backbones import resolve_weights

    data = tmp_path / "data"
    data.mkdir()
    rows = [(write_motion_video(data / f"v_{k}_g0{i}_c01.avi", k, (64, 48), 6 + 3 * i, seed=i).name, k)
            for i, k in enumerate(["right", "still", "zoom_in"])]
    write_csv(data / "train.csv", rows)
    write_csv(data / "test.csv", rows[:1])
    base = [f"data.root={data}", f"cache.dir={tmp_path / 'cache'}", "sampling.max_seq_length=8",
            "sampling.image_size=32", "extractor.name=efficientnet_lite0", "extractor.batch_size=4",
            "search.seq_length=[4,8]"]
    appearance_only = load_config(defaults_only=True, overrides=base)
    weights = resolve_weights(appearance_only.extractor)
    videos = split_videos(appearance_only, "train")[0]
    assert extract.extract_videos(appearance_only, videos, weights, progress=False).extracted == 3

    def no_cnn(*args, **kwargs):
        raise AssertionError("the CNN was built to add the motion stream")

    monkeypatch.setattr(extract, "build_frame_model", no_cnn)
    with_motion = load_config(defaults_only=True, overrides=base + ["motion.enabled=true"])
    report = extract.extract_videos(with_motion, videos, weights, progress=False)
    assert (report.extracted, report.motion_extracted) == (0, 3)
    assert extract.extract_videos(with_motion, videos, weights, progress=False).motion_extracted == 0
    split, _ = load_split(with_motion, "train", weights)
    assert split.motion.shape == (3, 8, descriptor_size(2))
    for row, key in enumerate(split.keys):
        clip = decode_sampled(data / key, 8, 32, motion=FlowDescriber())
        np.testing.assert_array_equal(split.motion_valid[row, : clip.count], clip.motion_valid)
        np.testing.assert_allclose(split.motion[row, : clip.count], clip.motion, atol=1e-6)
    joined = split.inputs(4, "appearance+motion")
    assert joined.shape == (3, 4, 1280 + descriptor_size(2) + 1)


DIM, MOTION = 12, 5


def _stream_clips(rng, lengths, total, stream):
    """Clips of the given real lengths in ``stream``'s layout (last real step without a successor), padded."""
    features = np.zeros((len(lengths), total, DIM), np.float32)
    motion = np.zeros((len(lengths), total, MOTION), np.float32)
    valid = np.zeros((len(lengths), total), bool)
    for row, n in enumerate(lengths):
        features[row, :n] = rng.normal(size=(n, DIM)) + 2.0
        motion[row, :n] = rng.normal(size=(n, MOTION))
        valid[row, : n - 1] = True
    return stream_sequences(stream, total, np.array(lengths), features, motion, valid)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stream", [s for s in STREAMS if "motion" in s])
def test_every_family_reads_motion_and_padding_changes_no_prediction(family, stream, tmp_path):
    rng = np.random.default_rng(0)
    x = _stream_clips(rng, [10, 7, 3, 1, 2], 10, stream)
    assert x.shape[-1] == stream_width(stream, DIM, MOTION)
    model = build_sequence_model(num_features=DIM, num_classes=3, family=family, stream=stream, motion_dim=MOTION,
                                 normalizer=(np.full(DIM, 2.0), np.ones(DIM)),
                                 motion_normalizer=(np.zeros(MOTION), np.ones(MOTION)), inputs="frames+deltas",
                                 temporal_centering=True, frame_units=8, pooling="mean+std", gru_units=(8,),
                                 conv_filters=8, attention_units=8, input_dropout=0.2)
    assert np.isfinite(model.fit(x, np.array([0, 1, 2, 0, 1]), epochs=1, verbose=0).history["loss"][0])
    short = model.predict(x, verbose=0)
    padded = model.predict(np.concatenate([x, np.zeros((5, 15, x.shape[-1]), np.float32)], axis=1), verbose=0)
    np.testing.assert_allclose(short, padded, atol=1e-3)
    changed = x.copy()
    motion_start = DIM if stream == "appearance+motion" else 0
    changed[0, :9, motion_start] += 5.0  # motion alone changes the prediction
    assert not np.allclose(model.predict(changed, verbose=0)[0], short[0], atol=1e-4)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "m.keras", compile=False).predict(x, verbose=0),
                               short, atol=1e-5)


def test_seed_ensemble_averages_its_members_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    x = _stream_clips(rng, [6, 4, 2], 6, "motion")
    members = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        members.append(build_sequence_model(num_features=DIM, num_classes=3, family="pooled", stream="motion",
                                            motion_dim=MOTION, frame_units=4))
    ensemble = seed_ensemble(members)
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    ensemble.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    assert seed_ensemble(members[:1]) is members[0]


def test_the_registered_model_computes_the_cached_streams_and_averages_its_seeds(searched, monkeypatch):
    """The champion of the shared search reads appearance + motion and is the mean of two seeds: the streams it
    computes for a video equal the cached ones, and so do its probabilities from them."""
    import mlflow

    from videoclf.dataset import load_split
    from videoclf.features.backbones import resolve_weights

    monkeypatch.setenv("MLFLOW_TRACKING_URI", searched["uri"])
    config = load_config(searched["config"])
    result = searched["result"]
    assert result.best_hyperparameters["streams"] == "appearance+motion" and len(result.final.models) == 2
    model = mlflow.pyfunc.load_model(MODEL)
    served = model.unwrap_python_model()
    assert served.settings.stream == "appearance+motion" and served.settings.motion.enabled
    videos = searched["videos"]
    clips, errors = served.streams([str(v) for v in videos])
    assert not errors
    test, _ = load_split(config, "test", resolve_weights(config.extractor))
    rows = [test.keys.index(v.name) for v in videos]
    np.testing.assert_array_equal(clips.motion_valid, test.motion_valid[rows])
    np.testing.assert_allclose(clips.motion, test.motion[rows], atol=1e-6)
    np.testing.assert_allclose(clips.features, test.features[rows].astype(np.float32), atol=2e-3)
    length = result.best_hyperparameters["seq_length"]
    members = [m.predict(test.inputs(length, "appearance+motion")[rows], verbose=0) for m in result.final.models]
    table = model.predict(pd.DataFrame({"video_path": [str(v) for v in videos]}))
    np.testing.assert_allclose(table[list(served.classes)].to_numpy(), np.mean(members, axis=0), atol=2e-3)


def test_the_verdict_says_when_validation_cannot_tell_champion_and_baseline_apart():
    from types import SimpleNamespace

    from videoclf.search.baselines import BaselineResult
    from videoclf.search.report import verdict

    final = SimpleNamespace(registered=SimpleNamespace(accuracy=0.9))
    baseline = BaselineResult("motion_logreg", 0.88, SimpleNamespace(accuracy=0.87), "C=1", 0.02)
    close = verdict(0.90, final, [baseline], best_se=0.03)
    assert "indistinguishable from the motion-stream statistics" in close and "0.900 ± 0.030" in close
    assert "champion vs best baseline" in verdict(0.95, final, [baseline], best_se=0.03)
    assert "champion vs best baseline" in verdict(0.90, final, [baseline], best_se=0.0)  # holdout: no error known
    assert verdict(0.80, final, [baseline], best_se=0.03).startswith("WARNING")
