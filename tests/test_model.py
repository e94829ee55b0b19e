"""Every model family: builds, trains, ignores padding, and round-trips inside the registered pyfunc."""

import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from videoclf.config import load_config
from videoclf.model import FAMILIES, INPUTS, StepChannels, build_sequence_model

from conftest import run_cli, write_video

DIM, CLASSES = 12, 3


def _clips(rng, lengths, total):
    """Clips of the given real lengths, zero-padded to ``total`` steps."""
    x = np.zeros((len(lengths), total, DIM), np.float32)
    for row, n in enumerate(lengths):
        x[row, :n] = rng.normal(size=(n, DIM)) + 2.0
    return x


def _build(family, inputs):
    return build_sequence_model(num_features=DIM, num_classes=CLASSES, family=family, inputs=inputs,
                                normalizer=(np.full(DIM, 2.0), np.ones(DIM)), temporal_centering=True,
                                frame_units=8, pooling="mean+max+min+std", gru_units=(8, 4), bidirectional=True,
                                conv_filters=8, conv_layers=2, attention_units=8, dense_units=8, input_dropout=0.2)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("inputs", INPUTS)
def test_family_trains_and_padding_changes_no_prediction(family, inputs, tmp_path):
    rng = np.random.default_rng(0)
    lengths = [10, 7, 3, 1, 2]
    x = _clips(rng, lengths, 10)
    model = _build(family, inputs)
    history = model.fit(x, np.array([0, 1, 2, 0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    short = model.predict(x, verbose=0)
    padded = model.predict(np.concatenate([x, np.zeros((5, 15, DIM), np.float32)], axis=1), verbose=0)
    np.testing.assert_allclose(short, padded, atol=1e-3)
    assert np.allclose(short.sum(axis=1), 1, atol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), short, atol=1e-5)


def test_step_channels_see_motion_not_appearance():
    """A still clip has small steps; a drifting one drifts; scale of the features does not matter."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=DIM) + 3
    still = np.stack([base + rng.normal(0, 0.01, DIM) for _ in range(6)])
    drifting = np.stack([base + t * 0.5 * np.ones(DIM) for t in range(6)])
    x = np.stack([still, drifting, 100 * drifting]).astype(np.float32)
    mask = np.ones((3, 6), np.float32)
    mask[:, 0] = 0  # no step into the first frame
    channels = np.asarray(StepChannels()([x, mask]))
    size, drift = channels[..., 0], channels[..., 2]
    assert size[0, 1:].max() < size[1, 1:].min()
    assert drift[1, -1] > drift[1, 1] and drift[0, -1] < drift[1, -1]
    np.testing.assert_allclose(channels[1], channels[2], atol=1e-5)  # relative change: any feature scale
    assert np.all(channels[:, 0] == 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pyfunc")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        yield root


@pytest.mark.parametrize("family", FAMILIES)
def test_family_round_trips_inside_the_registered_video_model(family, store, make_config):
    from videoclf.features.backbones import resolve_weights
    from videoclf.registered.writer import log_video_model

    config = load_config(make_config({"sampling.max_seq_length": 6, "search.seq_length": [6]}))
    model = build_sequence_model(num_features=1280, num_classes=2, family=family, inputs="frames+deltas",
                                 frame_units=8, gru_units=(8,), conv_filters=8, attention_units=8)
    video = write_video(store / f"{family}.avi", 9, size=(64, 48))
    with mlflow.start_run():
        info = log_video_model(config, resolve_weights(config.extractor), model, ("A", "B"), 6)
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    table = pyfunc.predict(pd.DataFrame({"video_path": [str(video)]}))
    features, stored, errors = pyfunc.unwrap_python_model().features([str(video)])
    assert not errors and stored.tolist() == [6]
    expected = model.predict(features, verbose=0)[0]
    np.testing.assert_allclose(table[["A", "B"]].to_numpy()[0], expected, atol=1e-5)
    assert table.predicted_label[0] == ("A", "B")[int(np.argmax(expected))]


@pytest.mark.parametrize("old_module", ["videoclf.video_model", "videoclf.inference"])
def test_models_registered_by_earlier_layouts_still_load(old_module, store, make_config):
    """A model's code file names the module its pyfunc lived in when it was logged (``served_model.py`` imported
    ``videoclf.video_model``, older ones ``videoclf.inference``); MLflow resolves it against the installed package
    when videoclf is already imported (``videoclf predict``, ``videoclf serve``)."""
    import yaml

    from videoclf.features.backbones import resolve_weights
    from videoclf.registered.writer import log_video_model

    config = load_config(make_config({"sampling.max_seq_length": 6, "search.seq_length": [6]}))
    model = build_sequence_model(num_features=1280, num_classes=2, family="pooled", inputs="frames",
                                 frame_units=8)
    video = write_video(store / "old.avi", 9, size=(64, 48))
    with mlflow.start_run():
        info = log_video_model(config, resolve_weights(config.extractor), model, ("A", "B"), 6)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(store / old_module)))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    code_file = local / Path(flavor["model_code_path"]).name  # the copy in the model (the path names the source)
    code_file.write_text(f"from mlflow.models import set_model\n\nfrom {old_module} import VideoClassifier\n\n"
                         "set_model(VideoClassifier())\n")  # what that layout's served_model.py held
    script = (f"import videoclf.cli, mlflow, pandas as pd\nmodel = mlflow.pyfunc.load_model({str(local)!r})\n"
              f"print(model.predict(pd.DataFrame({{'video_path': [{str(video)!r}]}})).predicted_label[0])\n")
    result = run_cli([sys.executable, "-c", script], store)
    assert result.returncode == 0 and result.stdout.strip() in ("A", "B"), result.stderr[-2000:]




def test_litert_sequence_model_answers_as_keras_clip_by_clip_and_keeps_its_shape_when_empty():
    pytest.importorskip("ai_edge_litert")
    from videoclf.features.runtime import LiteRTSequences, convert_sequence_model

    keras.utils.set_random_seed(0)
    model = build_sequence_model(num_features=8, num_classes=3, family="gru", gru_units=(4,), frame_units=4)
    clips = np.random.default_rng(0).normal(size=(3, 5, 8)).astype(np.float32)
    clips[1, 3:] = 0  # a shorter clip: padding
    litert = LiteRTSequences(convert_sequence_model(model, 5), threads=1)
    np.testing.assert_allclose(litert(clips), model.predict(clips, verbose=0), atol=1e-5)
    assert litert(clips[:0]).shape == (0, 3)
