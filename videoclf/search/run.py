"""The ``tune`` job as a recipe: prepare → search → refit → baselines → publish → report.

Selection never looks at the test split: trials are scored by (cross-)
validation, the winner is refitted on all training videos and tested once,
and the registry's alias moves on the selection score. Test accuracy is
reported beside it, with a Wilson interval and the baselines' numbers.
Each step lives in its own module (``prepare``, ``tuner``, ``final``,
``baselines``, ``publish``, ``report``); this one only puts them in order.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from videoclf.config import Config
from videoclf.data.ensure import ensure_data
from videoclf.dataset import check_csvs
from videoclf.tempfiles import sweep_stale
from videoclf.errors import VideoclfError, writing_to
from videoclf.evaluation import Evaluation
from videoclf.features.backbones import WeightsSource, resolve_weights
from videoclf.registered.registry import Registration
from videoclf.search import report
from videoclf.search.baselines import BaselineResult, run_baselines
from videoclf.search.crossval import OUT_OF_FOLD_FILE, OutOfFold
from videoclf.search.final import FinalModels, compose, refit_winner
from videoclf.search.importance import hyperparameter_importance
from videoclf.search.identity import (  # noqa: F401 - search_id_for: the public way to name a search
    FinishedEarlier,
    finish_fingerprint,
    finished_earlier,
    is_worker,
    search_id_for,
)
from videoclf.search.prepare import PreparedData, hypermodel_for, prepare
from videoclf.search.publish import publish, writing_artifacts
from videoclf.search.select import Candidate, baseline_candidate, select, trial_candidate
from videoclf.search.tuner import direction, make_tuner
from videoclf.tracking import FINISHED_TAG, NullTracker, SearchTracker
from videoclf.ui_views import varied_hyperparameters


@dataclass
class SearchResult:
    """What ``tune`` produced: the winning trial, its test scores, the baselines and its registry entry."""

    search_id: str
    parent_run_id: str | None
    best_hyperparameters: dict
    best_val_score: float
    evaluation: Evaluation
    baselines: list[BaselineResult]
    final: FinalModels
    registration: Registration | None
    trials: pd.DataFrame
    trial_seconds: dict[str, float]  # wall time of the trials this process ran, tracking included
    tracking_seconds: float  # of which spent in MLflow calls


def search_lock(config: Config, search_id: str):
    """One process at a time drives a search (its tuner files and its MLflow runs); a second one started
    meanwhile waits, then resumes what the first left (usually: nothing to run, the winner already registered)."""
    from videoclf.locks import waiting_lock

    return waiting_lock(Path(config.tuning.directory) / f"{search_id}.lock",
                        f"search {search_id} is running in another process; waiting to resume it when that ends")


def run_search(config: Config, name: str = "search", track: bool = True, register_model: bool = True,
               progress: bool = True, alongside=None) -> SearchResult | FinishedEarlier | None:
    """Runs (or resumes) the configured search and returns the tested winner; a search that finished earlier with
    the same data and settings is only reported (FinishedEarlier).

    In KerasTuner's distributed mode the chief serves the oracle, then tests, logs and registers the winner; a
    worker runs trials and returns None. ``alongside()``, if given, is a context manager held while the search
    runs, once the data is ready (``cluster.py`` starts its local workers in it).
    """
    sweep_stale()  # temporary folders of killed videoclf processes
    ensure_data(config)
    check_csvs(config)  # a wrong label or missing files: refused before a store is opened or a video extracted
    weights = resolve_weights(config.extractor)  # fails before any work when weights are missing
    search_id = search_id_for(config, name)
    fingerprint = finish_fingerprint(config, search_id, weights, register_model) if track and not is_worker() else None
    if fingerprint and (done := finished_earlier(config, search_id, fingerprint)):
        return done
    data = prepare(config, weights, progress)
    with contextlib.nullcontext() if is_worker() else search_lock(config, search_id), \
            alongside() if alongside else contextlib.nullcontext():
        if fingerprint and (done := finished_earlier(config, search_id, fingerprint)):
            return done  # another process finished it while this one waited
        tracker = (SearchTracker(config.tracking.experiment_name, search_id, name, worker=is_worker()) if track
                   else NullTracker(search_id))
        with tracker.parent_status():
            result = _recipe(config, name, data, weights, tracker, register_model and track)
            if result is not None and fingerprint:
                tracker.set_tags({FINISHED_TAG: fingerprint})  # the last step: a re-run of this job does nothing
        return result


def _recipe(config: Config, name: str, data: PreparedData, weights: WeightsSource, tracker, register_model: bool
            ) -> SearchResult | None:
    """The job's steps once the data is prepared, in order."""
    if not is_worker():
        with writing_artifacts(tracker):
            tracker.log_setup(**_setup_record(config, data, weights))
    tuner = _run_trials(config, data, tracker)
    if is_worker():
        print(f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: no trials left in search {tracker.search_id}; the "
              "chief tests and registers the winner", flush=True)
        return None
    best = _winner(tuner, config, tracker.search_id)
    trials = report.trials_table(tuner.oracle)
    report.print_trials(config, data, best, trials)
    best_final = refit_winner(config, tuner.hypermodel, best, data)
    baselines = run_baselines(config.tuning.baselines, data.folds, data.train, data.test, data.vocabulary.classes,
                              config.sampling.max_seq_length, config.training.seed)
    selection = select(config.tuning.select, _candidates(tuner, baselines, config), data.train.labels,
                       direction(config.tuning.objective) == "max")
    print(f"\nregistering ({config.tuning.select}): {selection.describe()}: {selection.reason}", flush=True)
    final = compose(config, tuner.hypermodel, selection, best_final, tuner.oracle.trials, baselines, data)
    outcome = report.Outcome(name, best, trials, data, final, baselines, hyperparameter_importance(trials))
    report.print_outcome(outcome)
    with writing_artifacts(tracker):
        report.log_report(tracker, config, outcome)
        registration = publish(config, tracker, data, final, weights) if register_model else None
    report.log_registration(tracker, outcome, registration)
    if isinstance(tracker, SearchTracker):
        _print_summary(config, tracker, data, final, registration)
    return SearchResult(tracker.search_id, tracker.parent_run_id, dict(best.hyperparameters.values), float(best.score),
                        final.registered, baselines, final, registration, trials, dict(tuner.trial_seconds),
                        tuner.tracking_seconds)


def _candidates(tuner, baselines: list[BaselineResult], config: Config) -> list[Candidate]:
    """Every completed trial (its out-of-fold predictions read from its trial directory, where any worker wrote
    them) and, under an accuracy objective, every baseline."""
    out = []
    for trial in tuner.oracle.trials.values():
        if str(trial.status) != "COMPLETED" or trial.score is None:
            continue
        stored = Path(tuner.get_trial_dir(trial.trial_id)) / OUT_OF_FOLD_FILE
        out_of_fold = OutOfFold.load(stored) if stored.exists() else None
        weights = (int(trial.metrics.get_last_value("n_weights")) if trial.metrics.exists("n_weights")
                   else int(tuner.hypermodel.build(trial.hyperparameters).count_params()))
        out.append(trial_candidate(trial, report.score_error(trial), out_of_fold, weights))
    if config.tuning.objective == "val_accuracy":
        out += [baseline_candidate(b) for b in baselines]
    return out


def _setup_record(config: Config, data: PreparedData, weights: WeightsSource) -> dict:
    """What the parent run records before any trial: config, space, tuner, weights, the training set."""
    return dict(config=config.to_dict(), space=config.search.model_dump(mode="json"), tuner=config.tuning.tuner,
                weights={"kind": weights.describe(), "digest": weights.digest},
                dataset_table=pd.DataFrame({"video": data.train.keys,
                                            "label": [data.vocabulary.classes[i] for i in data.train.labels]}),
                dataset_digest=data.train.digest, dataset_source=str(config.data.csv_path("train")))


def _run_trials(config: Config, data: PreparedData, tracker):
    """Step 2: the tuner's trials (resumed where a stopped run left them); returns the tuner."""
    import keras

    keras.utils.set_random_seed(config.training.seed)
    tuner = make_tuner(config, hypermodel_for(config, data), data.folds, tracker, tracker.search_id,
                       data.vocabulary.classes)
    if not is_worker():
        tracker.save_trials_view(varied_hyperparameters(tuner.oracle.hyperparameters))
    with writing_to(f"the tuner directory {config.tuning.directory}", "make room there, or set tuning.directory "
                    "to another folder (e.g. --set tuning.directory=/scratch/tuner)"):
        _search(tuner, config, tracker.search_id)
    return tuner


def _search(tuner, config: Config, search_id: str) -> None:
    try:
        tuner.search(verbose=0)
    except RuntimeError:
        # KerasTuner stops a search after too many failed trials in a row; known by the oracle's state, not by
        # the wording of its message.
        last = _stopped_by_failures(tuner.oracle)
        if last is None:
            raise
        limit = tuner.oracle.max_consecutive_failed_trials
        raise VideoclfError(
            f"KerasTuner stopped search {search_id}: {limit} trials failed in a row (the last with: {last}). Every "
            f"failed trial is a FAILED run with its error in MLflow (experiment {config.tracking.experiment_name}); "
            "fix the cause and re-run."
        ) from None


def _stopped_by_failures(oracle) -> str | None:
    """The last error when ``max_consecutive_failed_trials`` trials failed in a row (in the order they ended)."""
    run, limit = 0, oracle.max_consecutive_failed_trials
    for trial_id in getattr(oracle, "end_order", []):
        trial = oracle.trials[trial_id]
        run = run + 1 if trial.status == "FAILED" else 0
        if run >= limit:
            lines = (trial.message or "").strip().splitlines()
            return lines[-1] if lines else "no message"
    return None


def _winner(tuner, config: Config, search_id: str):
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].score is None:
        raise VideoclfError(f"No trial of search {search_id} completed; see the FAILED trial runs in MLflow "
                            f"(experiment {config.tracking.experiment_name}) for their errors.")
    return best[0]


def _print_summary(config: Config, tracker: SearchTracker, data: PreparedData, final: FinalModels,
                   registration: Registration | None) -> None:
    import mlflow

    from videoclf.console import tune_summary

    print(tune_summary(tracking_uri=mlflow.get_tracking_uri(), experiment=config.tracking.experiment_name,
                       experiment_id=tracker.experiment_id, run_id=tracker.parent_run_id,
                       search_id=tracker.search_id, registration=registration, evaluation=final.registered,
                       example_video=config.data.root / data.test.keys[0] if data.test.keys else None,
                       alias=config.tracking.champion_alias), flush=True)
