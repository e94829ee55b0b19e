"""The ``tune`` job: cached features → tracked KerasTuner search → tested, registered winner."""

from __future__ import annotations

import hashlib
import os
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from videoclf.config import Config
from videoclf.data.source import ensure_data
from videoclf.dataset import SplitData, Vocabulary, load_split, validation_split
from videoclf.errors import VideoclfError
from videoclf.evaluation import Evaluation, evaluate_probabilities, format_report, write_report_files
from videoclf.features.extractors import FEATURE_DIMS, resolve_weights
from videoclf.model import feature_statistics
from videoclf.registry import Registration, model_requirements, register, sequence_signature
from videoclf.search.hypermodel import GRUHyperModel
from videoclf.search.tuner import make_tuner, training_callbacks
from videoclf.tracking import SearchTracker


@dataclass
class SearchResult:
    """What ``tune`` produced: the winning trial, its test scores and its registry entry."""

    search_id: str
    parent_run_id: str | None
    best_hyperparameters: dict
    best_val_score: float
    evaluation: Evaluation
    registration: Registration | None
    trials: pd.DataFrame
    trial_seconds: dict[str, float]  # wall time of the trials this process ran, tracking included
    tracking_seconds: float  # of which spent in MLflow calls


def search_id_for(config: Config, name: str) -> str:
    """Same config → same id → the search resumes; ``max_trials`` may grow without starting over."""
    if config.tuning.project_name:
        return config.tuning.project_name
    identity = config.to_dict()
    identity["tuning"] = {k: v for k, v in identity["tuning"].items() if k not in ("max_trials", "overwrite")}
    identity.pop("tracking")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


def _trials_table(oracle) -> pd.DataFrame:
    rows = []
    for trial in oracle.trials.values():
        row = {"trial": trial.trial_id, "status": str(trial.status),
               "score": np.nan if trial.score is None else round(trial.score, 4)}
        row.update(trial.hyperparameters.values)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("score", ascending=False, na_position="last") if len(table) else table


def _curves(trial) -> dict[str, list[float]]:
    out = {}
    for keras_name, name in (("loss", "train_loss"), ("val_loss", "val_loss"), ("accuracy", "train_accuracy"),
                             ("val_accuracy", "val_accuracy")):
        if trial.metrics.exists(keras_name):
            out[name] = [obs.value[0] for obs in trial.metrics.get_history(keras_name)]
    return out


def distributed_role() -> str | None:
    """KerasTuner's distributed role from the environment: ``chief``, ``tunerN`` (a worker) or None."""
    return os.environ.get("KERASTUNER_TUNER_ID") if os.environ.get("KERASTUNER_ORACLE_IP") else None


def run_search(config: Config, name: str = "search", track: bool = True, register_model: bool = True,
               progress: bool = True) -> SearchResult | None:
    """Runs (or resumes) the configured search and returns the tested winner.

    In KerasTuner's distributed mode the chief serves the oracle, then tests,
    logs and registers the winner; a worker runs trials and returns None.
    """
    import keras

    ensure_data(config)
    weights = resolve_weights(config.extractor)  # fails before any work when weights are missing
    train_all, vocabulary = load_split(config, "train", weights=weights, progress=progress)
    test, _ = load_split(config, "test", vocabulary, weights=weights, progress=progress)
    train, validation = validation_split(train_all, config.training.validation_fraction, config.training.seed)
    print(f"data: {len(train)} train / {len(validation)} validation (grouped) / {len(test)} test videos, "
          f"{len(vocabulary.classes)} classes", flush=True)

    normalizer = feature_statistics(train.features, train.stored)
    dim = FEATURE_DIMS[config.extractor.name]
    hypermodel = GRUHyperModel(config.search, dim, len(vocabulary.classes), normalizer, train, validation)
    search_id = search_id_for(config, name)
    role = distributed_role()
    worker = bool(role) and role != "chief"
    tracker = SearchTracker(config.tracking.experiment_name, search_id, name, worker=worker) if track else None
    if tracker and not worker:
        tracker.log_setup(
            config=config.to_dict(), space=config.search.model_dump(mode="json"), tuner=config.tuning.tuner,
            weights={"kind": weights.describe(), "digest": weights.digest},
            dataset_table=pd.DataFrame({"video": train_all.keys,
                                        "label": [vocabulary.classes[i] for i in train_all.labels]}),
            dataset_digest=train_all.digest, dataset_source=str(config.data.csv_path("train")))
    keras.utils.set_random_seed(config.training.seed)
    tuner = make_tuner(config, hypermodel, tracker, search_id)
    status = "FAILED"
    try:
        tuner.search(epochs=config.training.epochs, callbacks=training_callbacks(config), verbose=0)
        if worker:
            print(f"worker {role}: no trials left; the chief tests and registers the winner", flush=True)
            status = "FINISHED"
            return None
        result = _finish(config, tuner, tracker, vocabulary, test, search_id, name, register_model)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        raise VideoclfError(
            f"KerasTuner stopped search {search_id}: {exc} Every failed trial is a FAILED run with its error "
            f"in MLflow (experiment {config.tracking.experiment_name}); fix the search space and re-run."
        ) from None
    finally:
        if tracker:
            tracker.finish(status)


def _finish(config, tuner, tracker, vocabulary: Vocabulary, test: SplitData, search_id: str, name: str,
            register_model: bool) -> SearchResult:

    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        raise VideoclfError(f"No trial of search {search_id} completed; see the FAILED trial runs in MLflow "
                            f"(experiment {config.tracking.experiment_name}) for their errors.")
    best = best_trials[0]
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed for inference
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(best)
    length = best.hyperparameters.get("seq_length")
    probabilities = model.predict(test.sequences(length), verbose=0)
    evaluation = evaluate_probabilities(probabilities, test.labels, vocabulary.classes)
    trials = _trials_table(tuner.oracle)
    print("\ntrials (best first):\n" + trials.head(20).to_string(index=False))
    print(f"\nwinner: trial {best.trial_id}, validation {config.tuning.objective} {best.score:.4f}")
    print("test split:\n" + format_report(evaluation))
    registration = None
    if tracker:
        metrics = {**evaluation.metrics(), f"best_{config.tuning.objective}": best.score,
                   "trials_completed": int((trials.status == "COMPLETED").sum())}
        tracker.log_metrics(metrics)
        tracker.client.set_tag(tracker.parent_run_id, "best_trial_id", best.trial_id)
        with tempfile.TemporaryDirectory(prefix="videoclf-report-") as tmp:
            files = write_report_files(evaluation, Path(tmp), _curves(best), title=name)
            trials.to_csv(Path(tmp) / "trials.csv", index=False)
            files["trials"] = Path(tmp) / "trials.csv"
            tracker.log_artifact_files(files, "evaluation")
        if register_model:
            registration = _log_and_register(config, model, vocabulary, length, evaluation, test, tracker, best)
            verdict = "now" if registration.champion else "not"
            print(f"registered {registration.name} version {registration.version}; "
                  f"{verdict} '{config.tracking.champion_alias}': {registration.reason}")
    return SearchResult(search_id, tracker.parent_run_id if tracker else None, dict(best.hyperparameters.values),
                        float(best.score), evaluation, registration, trials, dict(tuner.trial_seconds),
                        tuner.tracking_seconds)


def _log_and_register(config, model, vocabulary, length, evaluation, test, tracker, best) -> Registration:
    """Logs the sequence model (tensor signature, time = -1) and the video-in pyfunc; registers the pyfunc."""
    import mlflow

    from videoclf.registry import log_video_model

    with mlflow.start_run(run_id=tracker.parent_run_id):
        mlflow.keras.log_model(
            model, name="sequence_model", pip_requirements=model_requirements(),
            signature=sequence_signature(model.input_shape[-1], len(vocabulary.classes)))
        info = log_video_model(config, model, vocabulary.classes, int(length))
    return register(info.model_uri, name=config.tracking.registered_model_name,
                    alias=config.tracking.champion_alias, test_accuracy=evaluation.accuracy,
                    test_digest=test.digest, tags={"search_id": tracker.search_id, "trial_id": best.trial_id,
                                                   "run_id": tracker.parent_run_id})
