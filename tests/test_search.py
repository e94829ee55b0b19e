"""Real KerasTuner searches on a tiny demo set, tracked in a real SQLite MLflow store."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from PIL import Image

from videoclf.config import load_config
from videoclf.search.run import FinishedEarlier, run_search, search_id_for
from videoclf.tracking import ROLE_TAG, STATUS_TAG

from conftest import REPO, TINY_SEARCH, cli_env, in_private_tmpfs, trial_runs, worker_pid


def test_search_logs_every_trial_registers_and_tests_the_winner(tmp_path, make_config, tracking_uri, capsys):
    config = load_config(make_config({**TINY_SEARCH, "tuning.max_trials": 3, "tuning.final_seeds": 2, "training.cv_folds": 3,
                                      "tuning.baselines": ["pooled_logreg", "step_stats_logreg", "seed_gru"]}))
    result = run_search(config, "tiny", progress=False)
    out = capsys.readouterr().out
    assert "champion vs best baseline" in out or "no trial beat the best baseline" in out or "registered the" in out
    assert f"registering ({config.tuning.select}): " in out
    assert "tracking store" in out and tracking_uri in out and result.parent_run_id in out
    assert "confusion matrix" in out and "mlflow ui --backend-store-uri" in out and "videoclf predict" in out
    client = MlflowClient()
    runs = trial_runs(client, result.search_id)
    assert len(runs) == len(result.trials) == 3
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.info.status == "FINISHED" and run.data.tags[STATUS_TAG] == "COMPLETED"
        assert {"seq_length", "batch_size", "gru_units_0", "learning_rate", "dropout"} <= set(run.data.params)
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):  # mean over the folds
            history = client.get_metric_history(run.info.run_id, metric)
            assert [m.step for m in history] == [0, 1]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "fold_score")] == [0, 1, 2]
        assert "score" in run.data.metrics and run.data.metrics["score_se"] >= 0
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert {"test_accuracy", "test_macro_f1", "best_val_accuracy", "selection_score", "test_accuracy_ci_low",
            "test_accuracy_ci_high", "test_ece", "test_accuracy_seed_mean", "test_accuracy_seed_std",
            "test_accuracy_seed_0", "test_accuracy_seed_1", "selection_score_se"} <= set(
        parent.data.metrics)
    metrics = parent.data.metrics
    assert metrics["test_accuracy_ci_low"] <= metrics["test_accuracy"] <= metrics["test_accuracy_ci_high"]
    for baseline in ("pooled_logreg", "step_stats_logreg", "seed_gru"):  # beside every search, same folds
        assert 0 <= metrics[f"baseline_{baseline}_selection"] <= 1
        assert 0 <= metrics[f"baseline_{baseline}_test_accuracy"] <= 1
    assert "champion_minus_best_baseline_selection" in metrics
    assert parent.data.tags["selection_protocol"] == "3-fold CV"
    assert parent.data.tags["champion_vs_baseline"]
    note = parent.data.tags["mlflow.note.content"]  # the run's description in the UI: a leaderboard
    assert "champion vs baselines" in note and "Trials, best first" in note and "version 1" in note
    assert "Which hyperparameters mattered" in note and "too few" in note  # 3 trials
    assert f"viewStateShareKey=videoclf-{result.search_id}&workflowType=machine_learning" in note  # trials view
    assert parent.data.tags["grouping"] == "UCF101 gNN in the video names"
    assert parent.data.tags["best_trial_run_id"] in {r.info.run_id for r in runs}
    version_page = client.get_model_version("videoclf-test", result.registration.version)
    assert "test accuracy" in version_page.description and "videoclf predict VIDEO --model" in version_page.description
    assert client.get_experiment_by_name("test").tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.data.params["extractor.name"] == "efficientnet_lite0"
    assert parent.data.tags["extractor.weights_digest"].startswith("sha256:")
    assert parent.inputs.dataset_inputs and parent.inputs.dataset_inputs[0].dataset.name == "train"
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/per_class_metrics.csv", "evaluation/baselines.csv",
            "evaluation/training_curves.png", "evaluation/reliability_diagram.png"} <= artifacts
    curves = client.download_artifacts(result.parent_run_id, "evaluation/training_curves.png", str(tmp_path))
    pixels = np.asarray(Image.open(curves).convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(pixels - (220, 20, 60)).sum(axis=1) < 30).sum() > 50  # the winner's line (crimson) is drawn
    version = client.get_model_version_by_alias("videoclf-test", "champion")
    assert str(version.version) == result.registration.version and result.registration.champion
    assert float(version.tags["test_accuracy"]) == pytest.approx(result.evaluation.accuracy, abs=1e-6)
    assert float(version.tags["selection_score"]) == pytest.approx(result.final.selection.score, abs=1e-6)
    assert version.tags["selection_rule"] == parent.data.tags["selection_rule"] == "one_se"  # the default
    assert metrics["best_trial_selection"] == pytest.approx(result.best_val_score)

    capsys.readouterr()
    again = run_search(config, "tiny", progress=False)  # a finished search: nothing redone, only reported
    out = capsys.readouterr().out
    assert isinstance(again, FinishedEarlier) and again.parent_run_id == result.parent_run_id
    assert again.registration.version == result.registration.version and again.registration.champion
    assert "finished earlier with the same data and settings: nothing to do" in out
    assert f"videoclf-test version {result.registration.version}, holds 'champion'" in out
    assert "refitting" not in out and "data:" not in out  # no refit, not even a cache read
    assert len(client.search_model_versions("name = 'videoclf-test'")) == 1
    assert client.get_run(result.parent_run_id).data.tags["registered_model_version"] == "videoclf-test/1"
    more = load_config(make_config({**TINY_SEARCH, "tuning.max_trials": 3, "tuning.final_seeds": 1,
                                    "training.cv_folds": 3, "tuning.baselines": ["pooled_logreg"]}))
    assert not isinstance(run_search(more, "tiny", progress=False), FinishedEarlier)  # other final settings: work


def test_failing_trial_is_failed_and_the_search_completes(tmp_path, make_config, tracking_uri, monkeypatch):
    # Config validation rejects impossible widths up front, so a run-time failure (out of memory, a
    # broken custom layer...) is injected for the trials that draw width 9; the others must complete.
    from videoclf.search.hypermodel import SequenceHyperModel

    real_build = SequenceHyperModel.build

    def build(self, hp):
        if hp.values.get("gru_units_0") == 9:
            raise RuntimeError("injected failure: cannot build this model")
        return real_build(self, hp)

    monkeypatch.setattr(SequenceHyperModel, "build", build)
    config = load_config(make_config({**TINY_SEARCH, "tuning.max_trials": 4, "search.gru_units": [[8, 9]],
                                      "search.seq_length": [8], "search.frame_units": [0],
                                      "search.dropout": [0.0], "search.learning_rate": [0.001],
                                      "search.input_dropout": [0.0]}))
    result = run_search(config, "failing", progress=False, register_model=False)
    runs = trial_runs(MlflowClient(), result.search_id)
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert failed.data.params["gru_units_0"] == "9" and "injected failure" in failed.data.tags["error"]
    assert result.best_hyperparameters["gru_units_0"] == 8


def test_a_search_whose_every_trial_fails_is_one_clear_error(tmp_path, make_config, tracking_uri, monkeypatch):
    from videoclf.errors import VideoclfError
    from videoclf.search.hypermodel import SequenceHyperModel

    def fit(self, *args, **kwargs):
        raise RuntimeError("injected failure: out of memory while training")

    monkeypatch.setattr(SequenceHyperModel, "fit", fit)
    config = load_config(make_config({**TINY_SEARCH, "tuning.max_trials": 5}))
    with pytest.raises(VideoclfError, match="KerasTuner stopped search .* FAILED run with its error"):
        run_search(config, "all-failing", progress=False)
    client = MlflowClient()
    runs = trial_runs(client, search_id_for(config, "all-failing"))
    assert len(runs) == 3 and all(r.info.status == "FAILED" for r in runs)  # KerasTuner's limit: 3 in a row
    parent = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                f"tags.{ROLE_TAG} = 'search'")[0]
    assert parent.info.status == "FAILED" and "KerasTuner stopped" in parent.data.tags["error"]


def test_resumed_search_reruns_nothing_and_logs_no_duplicates(tmp_path, make_config, tracking_uri):
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 2, "training.epochs": 60, "search.batch_size": [2]})
    config = load_config(path)
    search_id = search_id_for(config, "cfg")
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "videoclf", "tune", "--config", str(path)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "tune.log").open("w"))
    client = MlflowClient()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if client.get_experiment_by_name("test") and trial_runs(client, search_id):
                break
        except Exception:  # noqa: BLE001 - the store may be mid-creation
            pass
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "tune.log").read_text()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)  # mid-trial: its run is left RUNNING
    proc.wait()
    assert any(r.info.status == "RUNNING" for r in trial_runs(client, search_id))
    stopped = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                 f"tags.{ROLE_TAG} = 'search'")[0].info.run_id
    client.set_tag(stopped, "error", "ValueError: as an attempt that failed leaves it")

    first = run_search(config, "cfg", progress=False, register_model=False)  # resume
    runs = trial_runs(client, search_id)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["kt_trial_id"] for r in runs}) == 2

    more = load_config(path, ["tuning.max_trials=3"])
    assert search_id_for(more, "cfg") == search_id
    second = run_search(more, "cfg", progress=False, register_model=False)
    runs = trial_runs(client, search_id)
    assert len(runs) == 3 and len({r.data.tags["kt_trial_id"] for r in runs}) == 3
    assert second.parent_run_id == first.parent_run_id
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED" and "error" not in parent.data.tags  # the killed attempt's is gone


@pytest.mark.slow
def test_two_tune_processes_started_together_on_a_fresh_store(tmp_path, make_config, tracking_uri):
    # Fresh data folder, cache, tuner directory and SQLite store: everything is created by the two at once.
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 2, "training.epochs": 2})
    env = cli_env()
    procs = [subprocess.Popen([sys.executable, "-m", "videoclf", "tune", "--config", str(path)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
        assert "Traceback" not in output
    client = MlflowClient()  # the store is usable, and holds each trial once under one parent run
    search_id = search_id_for(load_config(path), "cfg")
    runs = trial_runs(client, search_id)
    assert len(runs) == 2 and len({r.data.tags["kt_trial_id"] for r in runs}) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    experiment = client.get_experiment_by_name("test")
    parents = client.search_runs([experiment.experiment_id], f"tags.{ROLE_TAG} = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [1]
    trial_dirs = list((tmp_path / "tuner" / search_id).glob("trial_*"))  # the tuner's files agree with MLflow
    assert len(trial_dirs) == 2


@pytest.mark.slow
def test_mlflow_run_entry_point(tmp_path, make_config, tracking_uri):
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 1, "training.epochs": 1})
    env = cli_env()
    result = subprocess.run(["mlflow", "run", str(REPO), "-e", "tune", "--env-manager", "local", "-P",
                             f"config={path}", "-P", "max_trials=1"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient()
    search_id = search_id_for(load_config(path), "cfg")
    assert len(trial_runs(client, search_id)) == 1
    project_run = client.search_runs([client.get_experiment_by_name("Default").experiment_id])[0]
    assert project_run.info.status == "FINISHED"
    parent = client.get_run(project_run.data.tags["videoclf_search_run"])
    assert parent.info.status == "FINISHED" and "test_accuracy" in parent.data.metrics


@pytest.mark.slow
def test_chief_and_two_local_workers_log_each_trial_once(tmp_path, make_config, tracking_uri):
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 4, "training.epochs": 2})
    env = cli_env()
    result = subprocess.run([sys.executable, "-m", "videoclf", "tune", "--config", str(path), "--local-workers", "2"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "worker tuner0" in result.stdout and "worker tuner1" in result.stdout
    client = MlflowClient()
    runs = trial_runs(client, search_id_for(load_config(path), "cfg"))
    assert len(runs) == 4 and len({r.data.tags["kt_trial_id"] for r in runs}) == 4
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and "test_accuracy" in parent.data.metrics
    assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [1]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_replaced_and_the_search_completes(tmp_path, make_config, tracking_uri):
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 4, "training.epochs": 40, "search.batch_size": [2]})
    env = cli_env()
    chief = subprocess.Popen([sys.executable, "-m", "videoclf", "tune", "--config", str(path), "--local-workers",
                              "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    client = MlflowClient()
    search_id = search_id_for(load_config(path), "cfg")
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and chief.poll() is None and victim is None:
        try:
            running = [r for r in trial_runs(client, search_id) if r.info.status == "RUNNING"]
        except Exception:  # noqa: BLE001 - the store may be mid-creation
            running = []
        if running:
            victim = worker_pid("tuner0", chief.pid)
        time.sleep(0.2)
    assert victim, "no worker was found running a trial"
    os.kill(victim, signal.SIGKILL)
    output, _ = chief.communicate(timeout=600)
    assert chief.returncode == 0, output[-3000:]
    assert "worker tuner0 exited with -9; restarting it" in output
    runs = trial_runs(client, search_id)
    assert len(runs) == 4 and len({r.data.tags["kt_trial_id"] for r in runs}) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [1]


@pytest.mark.parametrize("train_tags, test_tags, message", [
    (["A", "A", "A", "A"], ["A", "A"], "expected at least two classes"),
    (["A", "B", "A", "B"], ["A", "C"], "not among the training classes"),
])
def test_unusable_labels_stop_before_any_run(tmp_path, make_config, tracking_uri, train_tags, test_tags, message):
    from conftest import write_csv, write_video

    from videoclf.errors import DataError

    root = tmp_path / "data"
    for split, tags in (("train", train_tags), ("test", test_tags)):
        rows = [(f"v_{tag}_g{i + (10 if split == 'test' else 1):02d}_c01.avi", tag) for i, tag in enumerate(tags)]
        for index, (name, _) in enumerate(rows):
            write_video(root / name, 6, seed=index)
        write_csv(root / f"{split}.csv", rows)
    config = load_config(make_config({"training.cv_folds": 1, "training.validation_fraction": 0.5}))
    with pytest.raises(DataError, match=message):
        run_search(config, "labels", progress=False)
    # refused from the CSVs alone: no store opened, nothing extracted
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "cache").exists()
    experiment = MlflowClient().get_experiment_by_name("test")
    assert experiment is None or not MlflowClient().search_runs([experiment.experiment_id])


def test_a_trial_run_replaced_on_resume_is_ended_before_it_is_deleted(tracking_uri):
    from videoclf.tracking import SearchTracker

    first = SearchTracker("test", "resumed-search", "resumed")
    first.trial_started("00", {"units": 8})  # then the process dies: its run stays RUNNING
    stale = first.trial_run_id("00")
    again = SearchTracker("test", "resumed-search", "resumed")  # the resume
    again.trial_started("00", {"units": 8})
    client = MlflowClient()
    replaced = client.get_run(stale)
    assert replaced.info.lifecycle_stage == "deleted" and replaced.info.status == "KILLED"
    assert replaced.data.tags[STATUS_TAG] == "REPLACED"
    assert again.trial_run_id("00") != stale
    experiment = client.get_experiment_by_name("test").experiment_id
    every_run = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert [r.info.status for r in every_run].count("RUNNING") == 2  # the live trial and its parent, nothing else


def test_a_full_artifact_store_is_one_message_and_nothing_is_registered(tmp_path, make_config):
    """A real small file system under the artifact store (a tmpfs in a private mount namespace; skipped where that
    is not permitted): the search runs, logging the model fails, the user reads one message."""
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 1})
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("test", artifact_location=str(artifacts))
    env = cli_env(MLFLOW_TRACKING_URI=uri)
    script = f"""
    mount -t tmpfs -o size=96k tmpfs {artifacts} || exit 77
    {sys.executable} -m videoclf tune --config {path}
    """
    result = in_private_tmpfs(script, tmp_path, env, timeout=900)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Cannot write to the MLflow artifact store" in error[0], result.stderr[-3000:]
    assert str(artifacts) in error[0] and "No space left on device" in error[0] and "Nothing was registered" in error[0]
    parent = client.search_runs([client.get_experiment_by_name("test").experiment_id],
                                f"tags.{ROLE_TAG} = 'search'")[0]
    assert parent.info.status == "FAILED"
    assert not client.search_registered_models()


def test_storage_failures_name_the_place_and_other_errors_pass_through():
    import errno
    import sqlite3

    from videoclf.errors import StorageError, writing_to

    with pytest.raises(StorageError, match=r"the tuner directory /t: No space left on device \(/t/trial.json\)\. "
                                           r"Set it elsewhere\. Nothing was registered"):
        with writing_to("the tuner directory /t", "set it elsewhere"):
            try:
                raise OSError(errno.ENOSPC, "No space left on device", "/t/trial.json")
            except OSError as exc:
                raise RuntimeError("saving the trial failed") from exc  # as a library wraps it
    with pytest.raises(StorageError, match="Cannot write to the MLflow tracking store: database or disk is full"):
        with writing_to("the tuner directory /t", "set it elsewhere"):
            raise sqlite3.OperationalError("database or disk is full")
    with pytest.raises(ValueError, match="unrelated"):
        with writing_to("the tuner directory /t", "set it elsewhere"):
            raise ValueError("unrelated")


def _three_folds(family: str):
    """Three folds of 36 random clips (each validated once), a tiny model builder of ``family`` and its fit:
    (folds, build, fit)."""
    from videoclf.dataset import Fold, SplitData
    from videoclf.model import build_sequence_model

    rng = np.random.default_rng(0)
    data = SplitData([f"v{i}" for i in range(36)], rng.integers(0, 3, 36),
                     rng.normal(size=(36, 6, 16)).astype(np.float16), np.full(36, 6), ["g"] * 36, "d")
    rows = np.arange(36)
    folds = [Fold(data.subset(np.setdiff1d(rows, held)), data.subset(held), held) for held in np.split(rows, 3)]

    def build():
        return build_sequence_model(num_features=16, num_classes=3, family=family, inputs="frames", frame_units=8,
                                    gru_units=(8,), dropout=0.3, input_dropout=0.3)

    def fit(model, fold, **kwargs):
        return model.fit(fold.train.inputs(6), fold.train.labels, batch_size=4,
                         validation_data=(fold.validation.inputs(6), fold.validation.labels), **kwargs)

    return folds, build, fit


@pytest.mark.parametrize("family", ["pooled", "gru"])
def test_one_compiled_model_across_folds_trains_exactly_as_a_fresh_model_per_fold(family):
    """cross_validate reuses one compiled model (traced once) for every fold; each fold must still start from its
    own seed's weights, dropout seeds and a fresh optimizer: the curves are identical to fresh models'."""
    import keras

    from videoclf.search.crossval import cross_validate

    folds, build, fit = _three_folds(family)
    shared = cross_validate(build, fit, folds, epochs=4, objective="val_accuracy", seed=7)
    fresh = []
    for index, fold in enumerate(folds):
        keras.utils.set_random_seed(7 + index)
        fresh.append(fit(build(), fold, epochs=4, verbose=0).history)
    expected = cross_validate(build, fit, folds[:1], epochs=4, objective="val_accuracy", seed=7)
    assert shared.fold_scores[0] == expected.fold_scores[0]
    assert shared.fold_scores == [h["val_accuracy"][shared.best_epoch] for h in fresh]
    assert shared.curves["train_loss"] == pytest.approx(
        list(np.mean([h["loss"] for h in fresh], axis=0)), abs=0, rel=1e-12)


def test_an_attempt_that_dies_mid_trial_leaves_its_finished_folds_to_the_next(tmp_path):
    """A trial's attempt killed in its second fold (a lost worker): the next attempt reads the first fold back
    instead of training it, and its score, curves and out-of-fold predictions equal an uninterrupted run's."""
    import keras

    from videoclf.search.crossval import cross_validate

    folds, build, fit = _three_folds("gru")
    trained = []

    def counted(model, fold, **kwargs):
        trained.append(fold)
        return fit(model, fold, **kwargs)

    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if len(trained) == 2 and epoch == 1:
                raise RuntimeError("the worker is gone")

    common = {"epochs": 4, "objective": "val_accuracy", "seed": 7,
              "validation_inputs": lambda fold: fold.validation.inputs(6)}
    with pytest.raises(RuntimeError):
        cross_validate(build, counted, folds, callbacks=lambda: [Killed()], checkpoints=tmp_path / "folds", **common)
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["fold-0-0.npz"]  # the finished fold only
    trained.clear()
    resumed = cross_validate(build, counted, folds, checkpoints=tmp_path / "folds", **common)
    assert resumed.resumed_folds == 1 and trained == folds[1:]
    whole = cross_validate(build, fit, folds, **common)
    assert resumed.fold_scores == whole.fold_scores and resumed.best_epoch == whole.best_epoch
    assert resumed.curves == pytest.approx(whole.curves, rel=1e-12)
    np.testing.assert_array_equal(resumed.out_of_fold.probabilities, whole.out_of_fold.probabilities)
    (tmp_path / "folds" / "fold-0-1.npz").write_bytes(b"not a fold")  # unreadable: trained again, not an error
    trained.clear()
    assert cross_validate(build, counted, folds, checkpoints=tmp_path / "folds", **common).resumed_folds == 2
    assert trained == folds[1:2]


@pytest.mark.slow
def test_a_deleted_version_or_changed_training_videos_register_a_new_version(tmp_path, make_config, tracking_uri,
                                                                             capsys):
    """The finished-search rule reads the registry's state too: a deleted version is registered again, and a
    finished search whose training files changed registers its refit as a new version (never the old version
    beside the new run's metrics)."""
    import cv2

    config = load_config(make_config({**TINY_SEARCH, "tuning.max_trials": 1}))
    first = run_search(config, "tiny", progress=False)
    client = MlflowClient()
    client.delete_model_version("videoclf-test", first.registration.version)
    capsys.readouterr()
    again = run_search(config, "tiny", progress=False)
    assert "is gone from the registry: refitting and registering it again" in capsys.readouterr().out
    assert not isinstance(again, FinishedEarlier) and again.registration.version != first.registration.version
    assert again.parent_run_id == first.parent_run_id and len(trial_runs(client, again.search_id)) == 1
    assert isinstance(run_search(config, "tiny", progress=False), FinishedEarlier)  # and now it is whole

    from videoclf.data.videos import split_videos

    key = split_videos(config, "train")[0][0].key
    capture = cv2.VideoCapture(str(config.data.root / key))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    writer = cv2.VideoWriter(str(config.data.root / key), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             frames[0].shape[1::-1])
    for frame in frames[::-1]:  # the same clip backwards: other bytes, same name
        writer.write(frame)
    writer.release()
    changed = run_search(config, "tiny", progress=False)
    assert not isinstance(changed, FinishedEarlier)
    assert changed.registration.version not in (first.registration.version, again.registration.version)
    version = client.get_model_version("videoclf-test", changed.registration.version)
    parent = client.get_run(changed.parent_run_id)
    assert parent.data.tags["registered_model_version"] == f"videoclf-test/{changed.registration.version}"
    assert float(version.tags["test_accuracy"]) == pytest.approx(parent.data.metrics["test_accuracy"], abs=1e-6)
    assert version.tags["training_content"] != client.get_model_version(
        "videoclf-test", again.registration.version).tags["training_content"]


def test_an_attempt_that_reads_every_fold_back_still_reports_the_trial_whole(tmp_path, make_config):
    """The attempt after one that finished every fold but died before reporting (a worker killed at the end of its
    trial) trains nothing and reports what the first would have, its weight count included."""
    from videoclf.data.ensure import ensure_data
    from videoclf.features.backbones import resolve_weights
    from videoclf.search.prepare import hypermodel_for, prepare
    from videoclf.search.tuner import make_tuner
    from videoclf.tracking import NullTracker

    config = load_config(make_config({**TINY_SEARCH, "training.cv_folds": 2}))
    ensure_data(config)
    data = prepare(config, resolve_weights(config.extractor), progress=False)
    tuner = make_tuner(config, hypermodel_for(config, data), data.folds, NullTracker("s"), "whole")
    trial = tuner.oracle.create_trial("tuner0")
    first = tuner.run_trial(trial)
    again = tuner.run_trial(trial)  # the folds the first attempt left are all read back
    assert again == first and again["n_weights"] > 0
