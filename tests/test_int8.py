"""extractor.precision=int8: features within the stated tolerance, their own cache key, the same model served."""

import mlflow
import numpy as np
import pytest

from videoclf.config import ExtractorConfig, SamplingConfig, load_config
from videoclf.data.photo_motion import TEST_PHOTOS, TRAIN_PHOTOS
from videoclf.data.videos import split_videos
from videoclf.errors import WeightsError
from videoclf.features import runtime
from videoclf.features.backbones import resolve_weights
from videoclf.features.cache import cache_key, open_cache
from videoclf.features.extract import extract_videos
from videoclf.features.quantize import INT8_TOLERANCE, photo_crops
from videoclf.features.runtime import build_frame_model
from videoclf.search.run import search_id_for

from conftest import write_dataset


def test_int8_features_are_within_the_stated_tolerance_on_photos_never_calibrated_on(tmp_path):
    assert not set(TEST_PHOTOS) & set(TRAIN_PHOTOS)  # calibration uses the training photos only
    frames = photo_crops(TEST_PHOTOS, 10, 160, seed=1)
    config = ExtractorConfig(name="efficientnet_lite0", weights="imagenet", batch_size=4)
    sampling, weights = SamplingConfig(image_size=160), resolve_weights(config)
    reference = build_frame_model(config.model_copy(update={"runtime": "litert"}), sampling, weights, tmp_path)
    int8 = build_frame_model(config.model_copy(update={"precision": "int8"}), sampling, weights, tmp_path)
    expected, got = reference(frames), int8(frames)  # 4 + 4 + 2 (padded)
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() >= INT8_TOLERANCE["min_cosine"] and cosine.mean() >= INT8_TOLERANCE["mean_cosine"]
    assert cosine.mean() < 0.99999  # really int8: not float32's features, hence their own cache key
    kept = sorted(p.name for p in tmp_path.glob("efficientnet_lite0-160px-*.tflite"))
    assert len(kept) == 2 and any("-int8r" in name for name in kept)
    again = build_frame_model(config.model_copy(update={"precision": "int8"}), sampling, weights, tmp_path)
    np.testing.assert_array_equal(again(frames[:4]), got[:4])  # the kept int8 model, loaded as is


def test_int8_has_its_own_cache_key_and_search_id_and_needs_litert(make_config, monkeypatch):
    path = make_config()
    default, int8 = load_config(path), load_config(path, ["extractor.precision=int8"])
    weights = resolve_weights(default.extractor)
    assert "precision" not in cache_key(default, weights)  # float32 caches keep their key from before int8
    assert cache_key(int8, weights)["precision"] == "int8"
    assert search_id_for(default, "cfg") == search_id_for(load_config(path, ["extractor.precision=float32"]), "cfg")
    assert search_id_for(int8, "cfg") != search_id_for(default, "cfg")
    monkeypatch.setenv("VIDEOCLF_ASSUME_GPU", "1")
    assert runtime.choose_runtime("auto", "int8") == "litert"  # int8 runs on LiteRT even beside a GPU
    monkeypatch.setattr(runtime, "litert_available", lambda: False)
    with pytest.raises(WeightsError, match="extractor.precision=int8 needs the ai-edge-litert package"):
        runtime.choose_runtime("auto", "int8")


def test_the_registered_int8_model_gives_the_cached_features(tmp_path, make_config, tracking_uri):
    """The calibrated int8 model that filled the cache is bundled with the registered model, not redone."""
    import keras

    from videoclf.registered.writer import log_video_model

    write_dataset(tmp_path / "data", n=3, frames=(10, 14, 18), test=3)
    config = load_config(make_config(), ["extractor.precision=int8"])
    weights = resolve_weights(config.extractor)
    videos, _ = split_videos(config, "train")
    assert extract_videos(config, videos, weights, progress=False).extracted == 3
    cached, _, _ = open_cache(config, weights).read([v.key for v in videos])
    sequence_model = keras.Sequential([keras.Input((8, 1280)), keras.layers.GlobalAveragePooling1D(),
                                       keras.layers.Dense(2, activation="softmax")])
    with mlflow.start_run():
        info = log_video_model(config, weights, sequence_model, ["C0", "C1"], 8)
    served = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
    assert served.frames_model.runtime == "litert"
    features, counts, errors = served.features([str(v.path) for v in videos])
    assert not errors and counts.tolist() == [8, 8, 8]
    np.testing.assert_array_equal(features.astype(np.float16), cached)
