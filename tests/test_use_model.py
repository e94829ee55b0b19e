"""The registered model as a user meets it: fresh process, other directory, raw video files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient


from conftest import MODEL, free_port, run_cli, searched_model, wait_until_up, write_video



def test_pyfunc_predicts_paths_in_a_fresh_process_elsewhere(searched, tmp_path):
    videos = [str(v) for v in searched["videos"][:2]]
    (tmp_path / "broken.avi").write_bytes(b"junk")
    script = f"""
import json, mlflow, pandas as pd
model = mlflow.pyfunc.load_model({MODEL!r})
table = model.predict(pd.DataFrame({{"video_path": {videos + [str(tmp_path / 'broken.avi')]!r}}}))
with open({videos[0]!r}, "rb") as fh:  # bytes and paths mixed in one request
    same = model.predict(pd.DataFrame({{"video_path": ["sent.avi", {videos[1]!r}], "video_bytes": [fh.read(), None]}}))
print(json.dumps({{"labels": table.predicted_label.tolist(), "errors": table.error.tolist(),
                  "columns": list(table.columns), "same": same.predicted_label.tolist()}}))
"""
    other = tmp_path / "elsewhere"
    other.mkdir()
    env_cache = searched["root"] / "cache"
    env_cache.rename(env_cache.with_name("cache-hidden"))  # the model must not need the feature cache
    try:
        result = run_cli([sys.executable, "-c", script], other, {"MLFLOW_TRACKING_URI": searched["uri"]})
    finally:
        env_cache.with_name("cache-hidden").rename(env_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    classes = json.loads((searched["root"] / "data" / "demo_manifest.json").read_text())["classes"]
    assert set(classes) <= set(out["columns"]) and "predicted_label" in out["columns"]
    assert out["labels"][:2] == out["same"] and all(label in classes for label in out["labels"][:2])
    assert out["labels"][2] is None and "broken.avi" in out["errors"][2] and out["errors"][0] is None


def test_predict_command_prints_sorted_probabilities_and_writes_a_gif(searched, tmp_path):
    video = searched["videos"][0]
    result = run_cli(["predict", str(video), "--model", MODEL, "--gif", "seen.gif",
                   "--csv", "p.csv"],
                  tmp_path, {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert result.returncode == 0, result.stderr[-3000:]
    trained_on = (searched["root"] / "data").resolve()
    assert result.stdout.splitlines()[0].startswith(  # which model answers, first
        f"model: videoclf-test version 1 ({MODEL}), trained on {trained_on}; classes: ")
    lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    percents = [float(line.rsplit(":", 1)[1].strip().rstrip("%")) for line in lines]
    assert len(percents) == 5 and percents == sorted(percents, reverse=True)
    assert abs(sum(percents) - 100) < 0.1
    from PIL import Image

    gif = Image.open(tmp_path / "seen.gif")
    total = 0
    for index in range(gif.n_frames):  # Pillow merges identical neighbours, adding up their durations
        gif.seek(index)
        total += gif.info["duration"]
    assert total == 4 * 100  # the model's 4 frames at 10 fps
    assert (tmp_path / "p.csv").read_text().startswith("video_path,")
    mine = tmp_path / "mine"  # the user's own data, named from a folder without a config file
    mine.mkdir()
    (mine / "train.csv").write_text("video_name,tag\na.avi,x\n")
    other = run_cli(["predict", str(video), "--model", MODEL, "--set", f"data.root={mine}"], tmp_path,
                    {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert other.returncode == 0, other.stderr[-3000:]
    assert f"warning: {MODEL} was trained on {trained_on}, not on {mine} (data.root)" in other.stdout
    assert "models:/videoclf-mine@champion" in other.stdout  # the model `tune` would register for that folder


def test_long_videos_warn_and_predict_over_time_windows(searched, tmp_path):
    long_video = write_video(tmp_path / "long.avi", 250, size=(64, 48), fps=25)  # 10 s; training clips <= 1.2 s
    whole = run_cli(["predict", str(long_video), "--model", MODEL], tmp_path,
                 {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "warning:" in whole.stdout and "--window" in whole.stdout
    result = run_cli(["predict", str(long_video), "--model", MODEL, "--window", "2",
                   "--stride", "1", "--csv", "windows.csv"], tmp_path, {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "windows.csv")
    windows = table[table.kind == "window"]
    assert len(windows) == 9 and table.kind.tolist()[-1] == "video"  # 0-2 s, 1-3 s, ..., 8-10 s, then the mean
    assert windows.window_start.tolist() == [float(i) for i in range(9)]
    assert (windows.window_end - windows.window_start).round(6).eq(2.0).all()
    classes = [c for c in table.columns if c not in ("video_path", "kind", "window_start", "window_end",
                                                     "predicted_label", "error", "warning")]
    assert np.allclose(table[classes].iloc[-1], windows[classes].mean(), atol=1e-5)
    assert "[8.0 s - 10.0 s]" in result.stdout and "mean over the windows" in result.stdout


def test_predict_exits_non_zero_when_a_video_fails(searched, tmp_path):
    (tmp_path / "broken.avi").write_bytes(b"junk")
    result = run_cli(["predict", str(searched["videos"][0]),
                   str(tmp_path / "broken.avi"), "--model", MODEL], tmp_path, {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert result.returncode == 2 and "1 of 2 videos could not be predicted" in result.stderr
    assert "error:" in result.stdout and "Traceback" not in result.stderr


def test_predict_without_a_model_is_one_clear_error(tmp_path):
    result = run_cli(["predict", "x.avi"], tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.returncode == 2 and "Cannot load model" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # a failed command writes nothing (no empty store, no lock file)


def test_evaluate_reproduces_the_tune_test_accuracy(searched):
    result = run_cli(["evaluate", "--config", str(searched["config"]),
                   "--model", MODEL], searched["root"], {"MLFLOW_TRACKING_URI": searched["uri"]})
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(searched["uri"])
    logged = client.get_run(searched["result"].parent_run_id).data.metrics["test_accuracy"]
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], "tags.videoclf_role = 'evaluation'")
    assert len(runs) == 1 and runs[0].data.tags["model_version"] == searched["result"].registration.version
    assert runs[0].data.metrics["test_accuracy"] == pytest.approx(logged, abs=1e-9)
    # the clips it gets wrong, to look at: the same on the search's parent run and on the evaluation run
    tested = len(searched["result"].final.registered.labels)
    wrong = round((1 - logged) * tested)
    for run_id in (searched["result"].parent_run_id, runs[0].info.run_id):
        listed = [a.path for a in client.list_artifacts(run_id, "evaluation")]
        if wrong:
            table = json.loads(Path(client.download_artifacts(run_id, "evaluation/mistakes.json")).read_text())
            assert len(table["data"]) == wrong and table["columns"][:4] == ["video", "frames", "true", "predicted"]
        else:
            assert "evaluation/mistakes.json" not in listed
    description = client.get_run(searched["result"].parent_run_id).data.tags["mlflow.note.content"]
    assert f"Misclassified test clips: {wrong} of {tested}" in description
    assert "The alias 'champion' moves" in client.get_registered_model("videoclf-test").description


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="Debian chromium not installed; .ci/run installs it")
def test_mlflow_ui_lists_the_trial_runs_in_a_browser(searched, tmp_path):
    """From a fresh browser: the experiment's link opens on its training runs (not MLflow 3.17's GenAI overview),
    the search's saved view lists its trials by score with the score as a column, and its charts draw every trial
    with a parallel-coordinates chart of the score."""
    from playwright.sync_api import sync_playwright

    from videoclf.ui_views import (SAVED_VIEW_TAG_PREFIX, TRAINING_RUNS, decode_view, trials_url, trials_view_id,
                                   trials_view_name)

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", searched["uri"], "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], cwd=searched["root"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        experiment = MlflowClient(searched["uri"]).get_experiment_by_name("test")
        with sync_playwright() as browser_driver:
            browser = browser_driver.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}?{TRAINING_RUNS}")
            page.get_by_text("searched", exact=True).first.wait_for(timeout=60000)  # the search's parent run
            assert "/runs" in page.url and page.get_by_text("Overview", exact=True).count() == 0
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # expand its trials
            page.get_by_text("trial-0", exact=True).first.wait_for(timeout=30000)
            page.screenshot(path=str(tmp_path / "mlflow_ui.png"))
            search_id = searched["result"].search_id
            page.goto(trials_url(experiment.experiment_id, search_id, port))  # the link the job prints
            page.get_by_text("trial-0", exact=True).first.wait_for(timeout=60000)
            page.get_by_text(trials_view_name(search_id)[:24], exact=False).first.wait_for(timeout=30000)
            assert page.get_by_text("Sort: score", exact=True).count() == 1
            page.goto(trials_url(experiment.experiment_id, search_id, port, charts=True))
            page.get_by_text("Parallel Coordinates", exact=True).first.wait_for(timeout=60000)
            page.get_by_text("Showing all runs", exact=True).first.wait_for(timeout=30000)
            browser.close()
        assert (tmp_path / "mlflow_ui.png").stat().st_size > 10_000
        tags = MlflowClient(searched["uri"]).get_experiment(experiment.experiment_id).tags
        name, state = decode_view(tags[SAVED_VIEW_TAG_PREFIX + trials_view_id(search_id)])
        assert name == trials_view_name(search_id)
        assert state["runsHiddenMode"] == "SHOW_ALL" and state["selectedColumns"][0] == "metrics.`score`"
        assert search_id in state["searchFilter"] and state["orderByKey"] == "metrics.`score`"
        parallel = state["compareRunCharts"][0]
        assert parallel["type"] == "PARALLEL" and parallel["selectedMetrics"] == ["score"]
        assert "learning_rate" in parallel["selectedParams"] and "seq_length" not in parallel["selectedParams"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_a_truncated_tracking_store_is_one_clear_error(searched, tmp_path):
    broken = tmp_path / "mlflow.db"
    broken.write_bytes((searched["root"] / "mlflow.db").read_bytes()[:50000])
    uri = f"sqlite:///{broken}"
    for args in (["predict", str(searched["videos"][0]), "--model", MODEL],
                 ["tune", "--config", str(searched["config"])]):
        result = run_cli(args, tmp_path, {"MLFLOW_TRACKING_URI": uri})
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Cannot open the MLflow tracking store" in result.stderr and "mlflow.db.broken" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("window,stride,message", [
    (0, None, "--window must be a finite number of seconds greater than 0. Received: 0"),
    (-1, None, "--window must be a finite number of seconds greater than 0"),
    (float("inf"), None, "--window must be a finite number"),
    (2, 0, "--stride must be a finite number of seconds greater than 0. Received: 0"),
    (None, 1, "--stride was given without --window"),
    (float("nan"), None, "--window must be a finite number of seconds greater than 0. Received: nan"),
    (2, float("nan"), "--stride must be a finite number of seconds greater than 0. Received: nan"),
])
def test_bad_window_settings_are_refused_before_anything_runs(window, stride, message):
    from videoclf.errors import VideoclfError
    from videoclf.registered.use import predict_videos

    with pytest.raises(VideoclfError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict_videos(["any.avi"], "models:/never-loaded/1", window=window, stride=stride)


def test_bad_windows_in_pyfunc_columns_are_row_errors_and_in_params_refuse_the_request(searched):
    from videoclf.registered.requests import POSITIVE_RULE, WITHOUT_WINDOW, RequestError
    from videoclf.registered.wire import STRIDE_COLUMN, WINDOW_COLUMN

    model = searched_model(searched)
    video = str(searched["videos"][0])
    table = model.predict(pd.DataFrame({"video_path": [video] * 5,
                                        "window_seconds": [0.0, -1.0, np.inf, np.nan, np.nan],
                                        "stride_seconds": [np.nan, np.nan, np.nan, 0.2, np.nan]}))
    errors = table.error.tolist()
    assert f"{WINDOW_COLUMN} {POSITIVE_RULE}. Received: 0.0" in errors[0]
    assert "Received: -1.0" in errors[1] and "Received: inf" in errors[2]
    assert f"{STRIDE_COLUMN} {WITHOUT_WINDOW} {WINDOW_COLUMN}" in errors[3]
    assert errors[4] is None and table.predicted_label.notna().tolist() == [False] * 4 + [True]
    for params, message in (({"window_seconds": 0.0}, "params: window_seconds must be"),
                            ({"stride_seconds": 1.0}, "params: stride_seconds was given without"),
                            ({"window_seconds": float("nan")}, "params: window_seconds must be .* Received: nan")):
        with pytest.raises(RequestError, match=message):
            model.predict(pd.DataFrame({"video_path": [video]}), params=params)


def test_a_one_frame_video_is_predicted_with_a_warning_that_nothing_moved(searched, tmp_path):
    still = write_video(tmp_path / "still.avi", 1, seed=4)
    model = searched_model(searched)
    table = model.predict(pd.DataFrame({"video_path": [str(still), str(searched["videos"][0])]}))
    assert table.predicted_label.notna().all() and table.error.isna().all()
    assert "only 1 frame decoded: nothing moves in it" in table.warning[0] and table.warning[1] is None


def test_on_a_cpu_the_registered_model_predicts_without_tensorflow(searched, tmp_path):
    """LiteRT runs the bundled extractor and sequence models: neither TensorFlow nor Keras is imported, by the
    pyfunc or by `videoclf predict`; on a GPU (assumed here) the Keras models give the same probabilities."""
    videos = [str(v) for v in searched["videos"][:2]]
    script = f"""
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({MODEL!r})
table = model.predict(pd.DataFrame({{"video_path": {videos!r}}}))
from videoclf.cli import main
main(["predict", *{videos!r}, "--model", {MODEL!r}])
print(json.dumps({{"probabilities": table.drop(columns=["video_path", "predicted_label", "error", "warning"])
                  .to_numpy().tolist(), "imported": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}}))
"""
    answers = {}
    for runtime, extra in (("litert", {}), ("keras", {"VIDEOCLF_ASSUME_GPU": "1"})):
        result = run_cli([sys.executable, "-c", script], tmp_path, {"MLFLOW_TRACKING_URI": searched["uri"], **extra})
        assert result.returncode == 0, result.stderr[-3000:]
        answers[runtime] = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["litert"]["imported"] == [] and answers["keras"]["imported"] == ["keras", "tensorflow"]
    np.testing.assert_allclose(answers["litert"]["probabilities"], answers["keras"]["probabilities"], atol=1e-4)


def test_a_damaged_model_file_falls_back_to_its_keras_form_or_is_one_clear_error(searched, tmp_path):
    """A half-copied artifact store: a truncated LiteRT form runs on the model's Keras form with one warning
    naming the file; a truncated Keras model is one error naming it, from `predict` and from `serve` (before any
    worker starts)."""
    import shutil

    import mlflow

    mlflow.set_tracking_uri(searched["uri"])
    try:
        folder = Path(shutil.copytree(mlflow.artifacts.download_artifacts(artifact_uri=MODEL), tmp_path / "model"))
    finally:
        mlflow.set_tracking_uri(None)
    video = str(searched["videos"][0])

    def predict(name):
        return run_cli(["predict", video, "--model", str(folder), "--csv", name], tmp_path, {})

    assert predict("clean.csv").returncode == 0
    tflite = folder / "artifacts" / "extractor.tflite"
    tflite.write_bytes(tflite.read_bytes()[:4096])
    fallback = predict("fallback.csv")
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert fallback.stderr.count("extractor.tflite is damaged") == 1 and "Traceback" not in fallback.stderr
    clean, kept = (pd.read_csv(tmp_path / name) for name in ("clean.csv", "fallback.csv"))
    classes = [c for c in clean.columns if c not in ("video_path", "predicted_label", "error", "warning")]
    np.testing.assert_allclose(kept[classes].to_numpy(), clean[classes].to_numpy(), atol=1e-3)

    keras_model = sorted((folder / "artifacts").glob("*.keras"))[0]
    keras_model.write_bytes(keras_model.read_bytes()[:4096])
    broken = predict("broken.csv")
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert f"artifact {keras_model.name}" in broken.stderr and "is damaged" in broken.stderr
    served = run_cli(["serve", "--model", str(folder), "--workers", "2", "--port", str(free_port())], tmp_path, {},
                     timeout=120)
    assert served.returncode != 0 and f"artifact {keras_model.name}" in served.stderr
    assert "Traceback" not in served.stderr
