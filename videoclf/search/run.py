"""The ``tune`` job as a flat recipe: prepare → search → test the winner beside the baselines → publish.

Selection never looks at the test split: trials are scored by (cross-)
validation, the winner is refitted on all training videos and tested once,
and the registry's alias moves on the selection score. Test accuracy is
reported beside it, with a bootstrap interval and the baselines' numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from videoclf.baselines import BaselineResult, run_baselines
from videoclf.config import Config
from videoclf.console import markdown_table
from videoclf.data.ensure import ensure_data
from videoclf.dataset import Fold, SplitData, Vocabulary, load_split, make_folds, selection_digest
from videoclf.errors import DataError, VideoclfError, writing_to
from videoclf.evaluation import Evaluation, evaluate_probabilities, format_report, write_report_files
from videoclf.features.extract import extract_split
from videoclf.features.backbones import FEATURE_DIMS, WeightsSource, resolve_weights
from videoclf.model import feature_statistics, motion_statistics, seed_ensemble
from videoclf.registered.registry import Registration
from videoclf.search.hypermodel import SequenceHyperModel, trial_stream
from videoclf.search.tuner import best_epoch_of, make_tuner
from videoclf.tracking import FINISHED_TAG, SearchTracker


SUMMARY_COLUMNS = ("trial", "status", "score", "score_se", "family", "streams", "inputs", "temporal_centering", "seq_length", "learning_rate")


@dataclass(frozen=True)
class PreparedData:
    """Everything the search reads: cached splits, the selection folds and their digest."""

    train: SplitData
    test: SplitData
    vocabulary: Vocabulary
    folds: list[Fold]
    selection_digest: str
    normalizer: tuple[np.ndarray, np.ndarray]
    motion_normalizer: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def protocol(self) -> str:
        return f"{len(self.folds)}-fold CV" if len(self.folds) > 1 else "holdout validation"


@dataclass(frozen=True)
class FinalModels:
    """The winner refitted on all training videos with each of ``tuning.final_seeds`` seeds, and the model that
    is registered: their mean probabilities (a deep ensemble: less variance between seeds, better calibrated)."""

    models: list  # one per seed
    evaluations: list[Evaluation]  # each seed's, on test
    ensemble: object  # the registered model (the only seed's model when there is one)
    ensemble_evaluation: Evaluation

    @property
    def registered(self) -> Evaluation:
        return self.ensemble_evaluation

    def seed_metrics(self) -> dict[str, float]:
        accuracies = [e.accuracy for e in self.evaluations]
        return {"test_accuracy_seed_mean": float(np.mean(accuracies)),
                "test_accuracy_seed_std": float(np.std(accuracies)), "final_seeds": len(accuracies),
                **{f"test_accuracy_seed_{i}": a for i, a in enumerate(accuracies)}}


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


@dataclass(frozen=True)
class FinishedEarlier:
    """A re-run of a search that had finished with the same data and settings: nothing was done again."""

    search_id: str
    parent_run_id: str
    registration: Registration | None


def finish_fingerprint(config: Config, search_id: str, weights: WeightsSource, register_model: bool) -> str:
    """What a finished job's results depend on beyond its search id: the listed videos (names, labels, sizes,
    modification times), the weights, the trial budget, the final refits, the baselines and where the winner goes.
    Equal fingerprints: re-running would redo the same work for the same answer."""
    from videoclf.data.videos import split_videos

    videos = {split: [(v.key, tag, v.size, v.mtime_ns) for v, tag in zip(*split_videos(config, split))]
              for split in ("train", "test")}
    tuning = config.tuning
    identity = {"search_id": search_id, "videos": videos, "weights": weights.digest, "max_trials": tuning.max_trials,
                "final_seeds": tuning.final_seeds, "baselines": list(tuning.baselines),
                "register": [config.tracking.registered_model_name, config.tracking.champion_alias] if register_model
                else None}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def finished_earlier(config: Config, search_id: str, fingerprint: str) -> FinishedEarlier | None:
    """The search's latest parent run, when it finished with this ``fingerprint`` (then says so on the console)."""
    from videoclf.console import finished_summary
    from videoclf.registered.registry import registration_of
    from videoclf.tracking import finished_parent_run

    run = finished_parent_run(config.tracking.experiment_name, search_id, fingerprint)
    if run is None:
        return None
    registration = registration_of(run.data.tags.get("registered_model_version"), config.tracking.champion_alias)
    print(finished_summary(run, registration, config.tracking.champion_alias), flush=True)
    return FinishedEarlier(search_id, run.info.run_id, registration)


def search_id_for(config: Config, name: str) -> str:
    """Same config → same id → the search resumes; ``max_trials`` may grow without starting over."""
    if config.tuning.project_name:
        return config.tuning.project_name
    identity = config.to_dict()
    identity["tuning"] = {k: v for k, v in identity["tuning"].items()
                          if k not in ("max_trials", "overwrite", "final_seeds", "baselines")}
    identity.pop("tracking")
    identity.pop("serving")  # neither changes what the search finds
    identity["extractor"].pop("runtime")  # the same features on either runtime
    if identity["extractor"]["precision"] == "float32":
        identity["extractor"].pop("precision")  # float32 searches keep the ids they had before precision existed
    if not config.motion.enabled:  # appearance-only searches keep the ids they had before the motion stream
        identity.pop("motion")
    if identity["search"]["streams"] == ["appearance"]:
        identity["search"].pop("streams")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


def distributed_role() -> str | None:
    """KerasTuner's distributed role from the environment: ``chief``, ``tunerN`` (a worker) or None."""
    return os.environ.get("KERASTUNER_TUNER_ID") if os.environ.get("KERASTUNER_ORACLE_IP") else None


# -- 1. prepare ------------------------------------------------------------
def prepare(config: Config, weights: WeightsSource, progress: bool) -> PreparedData:
    """Reads both splits from the cache (extracting what is missing) and cuts the selection folds."""
    for split in ("train", "test"):
        extract_split(config, split, weights, progress)
    train, vocabulary = load_split(config, "train", weights)
    present = {vocabulary.classes[i] for i in set(train.labels.tolist())}
    missing = [c for c in vocabulary.classes if c not in present]
    if len(present) < 2 or missing:
        raise DataError(f"{config.data.csv_path('train')}: expected at least two classes, each with usable "
                        f"training videos. Received: {sorted(present)}; without videos: {missing}. Add videos "
                        f"or set data.classes.")
    test, _ = load_split(config, "test", weights, vocabulary)
    training = config.training
    n_folds = training.folds_for(len(train))
    folds = make_folds(train, n_folds, training.validation_fraction, training.seed)
    data = PreparedData(train, test, vocabulary, folds,
                        selection_digest(train, n_folds, training.validation_fraction, training.seed),
                        feature_statistics(train.features, train.cached_frames),
                        motion_statistics(train.motion, train.motion_valid) if train.motion is not None else None)
    validation = sum(len(f.validation) for f in folds)
    print(f"data: {len(train)} train videos ({data.protocol}: {validation} validation predictions a trial, "
          f"grouped) / {len(test)} test videos, {len(vocabulary.classes)} classes", flush=True)
    return data


# -- 2. search -------------------------------------------------------------
def search(tuner, config: Config, search_id: str) -> None:
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


def _trials_table(oracle) -> pd.DataFrame:
    rows = []
    for trial in oracle.trials.values():
        row = {"trial": trial.trial_id, "status": str(trial.status),
               "score": np.nan if trial.score is None else round(trial.score, 4),
               "score_se": round(score_error(trial), 4) if trial.score is not None else np.nan}
        row.update(trial.hyperparameters.values)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("score", ascending=False, na_position="last") if len(table) else table


# -- 3. test the winner ------------------------------------------------------
def refit_winner(config: Config, hypermodel: SequenceHyperModel, best, data: PreparedData) -> FinalModels:
    """Trains the winning configuration on all training videos for its chosen epoch count, once per seed."""
    import keras

    epochs = (best_epoch_of(best) or 0) + 1
    hp = best.hyperparameters
    test_inputs = data.test.inputs(hp.get("seq_length"), trial_stream(hp))
    models, evaluations = [], []
    for seed in range(config.tuning.final_seeds):
        keras.utils.set_random_seed(config.training.seed + seed)
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, data.train, epochs=epochs, verbose=0)
        probabilities = model.predict(test_inputs, verbose=0)
        models.append(model)
        evaluations.append(evaluate_probabilities(probabilities, data.test.labels, data.vocabulary.classes))
    ensemble = seed_ensemble(models)
    together = evaluate_probabilities(ensemble.predict(test_inputs, verbose=0), data.test.labels,
                                      data.vocabulary.classes)
    return FinalModels(models, evaluations, ensemble, together)


def comparison_table(best_score: float, final: FinalModels, baselines: list[BaselineResult],
                     protocol: str, best_se: float = 0.0) -> pd.DataFrame:
    """Champion and baselines side by side: selection score ± its standard error over folds, test accuracy and
    its 95% interval."""
    seeds = f" (mean of {len(final.models)} seeds)" if len(final.models) > 1 else ""
    rows = [{"model": f"champion (search winner){seeds}", "selection": best_score, "se": best_se,
             "test": final.registered.accuracy, "test_ci": final.registered.interval}]
    rows += [{"model": b.description, "selection": b.validation, "se": b.validation_se, "test": b.test.accuracy,
              "test_ci": b.test.interval} for b in baselines]
    table = pd.DataFrame(rows)
    table[f"selection ({protocol})"] = [f"{v:.3f} ± {se:.3f}" if se else f"{v:.3f}"
                                        for v, se in zip(table.pop("selection"), table.pop("se"))]
    table["test accuracy [95% CI]"] = [f"{t:.3f} [{lo:.3f}, {hi:.3f}]" for t, (lo, hi) in
                                       zip(table.pop("test"), table.pop("test_ci"))]
    return table


def best_baseline(baselines: list[BaselineResult]) -> BaselineResult | None:
    """The baseline with the best selection score (the one the champion must beat)."""
    return max(baselines, key=lambda b: b.validation) if baselines else None


def summary_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table as printed and shown in the UI (every column stays in ``trials.csv``)."""
    return trials[[c for c in SUMMARY_COLUMNS if c in trials.columns]]


def score_error(trial) -> float:
    """A finished trial's standard error over folds (0 for a holdout split, or a trial from before it existed)."""
    return float(trial.metrics.get_last_value("score_se")) if trial.metrics.exists("score_se") else 0.0


def verdict(best_score: float, final: FinalModels, baselines: list[BaselineResult], best_se: float = 0.0) -> str:
    """One plain sentence: champion vs the best baseline on validation and on test, and whether validation can
    tell them apart at all (their difference against the champion's standard error over folds)."""
    top = best_baseline(baselines)
    if top is None:
        return "no baselines configured (tuning.baselines)"
    test_gap = final.registered.accuracy - top.test.accuracy
    scores = (f"validation {best_score:.3f} ± {best_se:.3f} vs {top.validation:.3f} ± {top.validation_se:.3f}, "
              f"test {final.registered.accuracy:.3f} vs {top.test.accuracy:.3f} ({test_gap:+.3f})")
    if best_se > 0 and abs(best_score - top.validation) <= best_se:
        return (f"champion indistinguishable from the {top.description} on validation: the difference "
                f"({best_score - top.validation:+.3f}) is within the champion's standard error over folds; "
                f"{scores}. The test split is scored once and does not choose between them.")
    if best_score > top.validation:
        return f"champion vs best baseline ({top.description}): {scores}"
    return (f"WARNING: no trial beat the best baseline on validation: {top.description} scored "
            f"{top.validation:.3f}, the best trial {best_score:.3f} (test {top.test.accuracy:.3f} vs "
            f"{final.registered.accuracy:.3f}). Widen the search space (search.family, search.inputs, "
            f"search.streams) or use the baseline.")


# -- 4. publish -------------------------------------------------------------
def leaderboard_markdown(name: str, data: PreparedData, best, trials: pd.DataFrame, comparison: pd.DataFrame,
                         summary: str, registration: Registration | None) -> str:
    """The parent run's description in the MLflow UI: champion vs baselines, the decision, trials best first."""
    lines = [f"### Search `{name}`: champion vs baselines", "", markdown_table(comparison), "",
             f"**{summary}**", ""]
    if registration is not None:
        decision = "holds" if registration.champion else "does not hold"
        lines += [f"Registered as **{registration.name} version {registration.version}**, which {decision} the "
                  f"alias: {registration.reason}.", ""]
    lines += [f"#### Trials, best first ({data.protocol}; winner: trial {best.trial_id})", "",
              markdown_table(summary_columns(trials).head(30))]
    return "\n".join(lines)



def _log_report(tracker: SearchTracker, config: Config, name: str, best, data: PreparedData, final: FinalModels,
                baselines: list[BaselineResult], trials: pd.DataFrame, comparison: pd.DataFrame,
                summary: str) -> None:
    metrics = {**final.registered.metrics(), **final.seed_metrics(),
               f"best_{config.tuning.objective}": best.score, "selection_score": best.score,
               "selection_score_se": score_error(best),
               "trials_completed": int((trials.status == "COMPLETED").sum())}
    for b in baselines:
        metrics.update({f"baseline_{b.name}_selection": b.validation, f"baseline_{b.name}_selection_se": b.validation_se,
                        f"baseline_{b.name}_test_accuracy": b.test.accuracy,
                        f"baseline_{b.name}_test_ci_low": b.test.interval[0],
                        f"baseline_{b.name}_test_ci_high": b.test.interval[1]})
    top = best_baseline(baselines)
    if top is not None:
        metrics["champion_minus_best_baseline_selection"] = best.score - top.validation
        metrics["champion_minus_best_baseline_test"] = final.registered.accuracy - top.test.accuracy
    tracker.log_metrics(metrics)
    tracker.set_tags({"best_trial_id": best.trial_id, "selection_protocol": data.protocol,
                      "selection_digest": data.selection_digest, "champion_vs_baseline": summary[:5000]})
    with tempfile.TemporaryDirectory(prefix="videoclf-report-") as tmp:
        tmp = Path(tmp)
        files = write_report_files(final.registered, tmp, tracker.search_curves(), title=name,
                                   highlight=best.trial_id)
        trials.to_csv(tmp / "trials.csv", index=False)
        files["trials"] = tmp / "trials.csv"
        comparison.to_csv(tmp / "baselines.csv", index=False)
        files["baselines"] = tmp / "baselines.csv"
        tracker.log_artifact_files(files, "evaluation")


def training_clips(config: Config, train: SplitData, sample: int = 20) -> dict | None:
    """How long the training clips were (frames, and seconds at their frame rate), stored with the model
    so that prediction can warn about videos far longer than anything seen in training."""
    from videoclf.errors import VideoError
    from videoclf.features.decode import video_fps

    if train.n_frames is None or not len(train.n_frames):
        return None
    rates = []
    for key in train.keys[:: max(1, len(train.keys) // sample)][:sample]:
        try:
            rates.append(video_fps(config.data.root / key))
        except VideoError:
            continue
    fps = float(np.median(rates)) if rates else 25.0
    median, longest = float(np.median(train.n_frames)), float(np.max(train.n_frames))
    return {"median_frames": median, "max_frames": longest, "fps": fps, "median_seconds": median / fps,
            "max_seconds": longest / fps}


def publish(config: Config, tracker: SearchTracker, model, best, data: PreparedData, final: FinalModels,
            weights: WeightsSource) -> Registration:
    """Logs the registered model to the parent run and registers it (once per winning trial)."""
    from videoclf.registered.registry import existing_version, register
    from videoclf.registered.writer import log_registered_model

    tags = {"search_id": tracker.search_id, "trial_id": best.trial_id, "run_id": tracker.parent_run_id,
            "trial_run_id": tracker.trial_run_id(best.trial_id) or ""}
    known = existing_version(config.tracking.registered_model_name, config.tracking.champion_alias, tags,
                             data.selection_digest)
    if known:
        return known
    with tracker.logging_to_parent():
        info = log_registered_model(config, weights, model, data.vocabulary.classes,
                                    int(best.hyperparameters.get("seq_length")), training_clips(config, data.train),
                                    trial_stream(best.hyperparameters))
    return register(info.model_uri, name=config.tracking.registered_model_name, alias=config.tracking.champion_alias,
                    selection_score=best.score, selection_digest=data.selection_digest,
                    higher_is_better=not config.tuning.objective.endswith("loss"),
                    test_accuracy=final.registered.accuracy, test_digest=data.test.digest, tags=tags)


def _writing_artifacts(tracker: SearchTracker):
    """A full (or read-only) artifact store met in the block: one message naming it."""
    return writing_to(f"the MLflow artifact store ({tracker.artifact_store()})",
                      "make room there, or log to an experiment whose artifacts live elsewhere (create one with "
                      "`mlflow experiments create -n NAME --artifact-location DIR`, then --set "
                      "tracking.experiment_name=NAME)")


# -- the job ------------------------------------------------------------------
def search_lock(config: Config, search_id: str):
    """One process at a time drives a search (its tuner files and its MLflow runs); a second one started
    meanwhile waits, then resumes what the first left (usually: nothing to run, the winner already registered)."""
    from videoclf.locks import waiting_lock

    return waiting_lock(Path(config.tuning.directory) / f"{search_id}.lock",
                        f"search {search_id} is running in another process; waiting to resume it when that ends")


def run_search(config: Config, name: str = "search", track: bool = True, register_model: bool = True,
               progress: bool = True) -> SearchResult | FinishedEarlier | None:
    """Runs (or resumes) the configured search and returns the tested winner; a search that finished earlier with
    the same data and settings is only reported (FinishedEarlier).

    In KerasTuner's distributed mode the chief serves the oracle, then tests,
    logs and registers the winner; a worker runs trials and returns None.
    """
    ensure_data(config)
    weights = resolve_weights(config.extractor)  # fails before any work when weights are missing
    search_id = search_id_for(config, name)
    role = distributed_role()
    worker = bool(role) and role != "chief"
    fingerprint = finish_fingerprint(config, search_id, weights, register_model) if track and not worker else None
    if fingerprint and (done := finished_earlier(config, search_id, fingerprint)):
        return done
    data = prepare(config, weights, progress)
    hypermodel = SequenceHyperModel(config.search, FEATURE_DIMS[config.extractor.name],
                                    len(data.vocabulary.classes), data.normalizer,
                                    data.train.motion.shape[-1] if data.train.motion is not None else 0,
                                    data.motion_normalizer)
    with contextlib.nullcontext() if worker else search_lock(config, search_id):
        if fingerprint and (done := finished_earlier(config, search_id, fingerprint)):
            return done  # another process finished it while this one waited
        tracker = SearchTracker(config.tracking.experiment_name, search_id, name, worker=worker) if track else None
        result = _run(config, tracker, hypermodel, data, weights, search_id, name, role, register_model)
        if tracker and result is not None:
            tracker.set_tags({FINISHED_TAG: fingerprint})  # the last step: a re-run of this job does nothing
        return result


def _run(config: Config, tracker: SearchTracker | None, hypermodel, data: PreparedData, weights: WeightsSource,
         search_id: str, name: str, role: str | None, register_model: bool) -> SearchResult | None:
    import keras

    worker = bool(role) and role != "chief"
    with tracker.parent_status() if tracker else contextlib.nullcontext():
        if tracker and not worker:
            with _writing_artifacts(tracker):
                tracker.log_setup(
                    config=config.to_dict(), space=config.search.model_dump(mode="json"), tuner=config.tuning.tuner,
                    weights={"kind": weights.describe(), "digest": weights.digest},
                    dataset_table=pd.DataFrame({"video": data.train.keys,
                                                "label": [data.vocabulary.classes[i] for i in data.train.labels]}),
                    dataset_digest=data.train.digest, dataset_source=str(config.data.csv_path("train")))
        keras.utils.set_random_seed(config.training.seed)
        tuner = make_tuner(config, hypermodel, data.folds, tracker, search_id)
        with writing_to(f"the tuner directory {config.tuning.directory}", "make room there, or set tuning.directory "
                        "to another folder (e.g. --set tuning.directory=/scratch/tuner)"):
            search(tuner, config, search_id)
        if worker:
            print(f"worker {role}: no trials left; the chief tests and registers the winner", flush=True)
            return None
        return _finish(config, tuner, hypermodel, tracker, data, weights, search_id, name, register_model)


def _finish(config: Config, tuner, hypermodel, tracker, data: PreparedData, weights: WeightsSource, search_id: str,
            name: str,
            register_model: bool) -> SearchResult:
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        raise VideoclfError(f"No trial of search {search_id} completed; see the FAILED trial runs in MLflow "
                            f"(experiment {config.tracking.experiment_name}) for their errors.")
    best = best_trials[0]
    trials = _trials_table(tuner.oracle)
    print("\ntrials (best first; every hyperparameter in the trial runs and evaluation/trials.csv):\n"
          + summary_columns(trials).head(20).to_string(index=False))
    print(f"\nwinner: trial {best.trial_id}, {data.protocol} {config.tuning.objective} {best.score:.4f}; "
          f"refitting on all {len(data.train)} training videos ({config.tuning.final_seeds} seeds)", flush=True)
    final = refit_winner(config, hypermodel, best, data)
    baselines = run_baselines(config.tuning.baselines, data.folds, data.train, data.test, data.vocabulary.classes,
                              config.sampling.max_seq_length, config.training.seed)
    summary = verdict(best.score, final, baselines, score_error(best))
    comparison = comparison_table(best.score, final, baselines, data.protocol, score_error(best))
    print("\n" + comparison.to_string(index=False))
    print(summary)
    seeds = final.seed_metrics()
    each = ", ".join(f"{e.accuracy:.3f}" for e in final.evaluations)
    registered = (f"the mean of {int(seeds['final_seeds'])} seeds' probabilities; each seed alone: "
                  f"{seeds['test_accuracy_seed_mean']:.3f} ± {seeds['test_accuracy_seed_std']:.3f}, each {each}"
                  if len(final.models) > 1 else "one seed")
    print(f"test split (registered model: {registered}):\n"
          + format_report(final.registered))
    registration = None
    if tracker:
        with _writing_artifacts(tracker):
            _log_report(tracker, config, name, best, data, final, baselines, trials, comparison, summary)
            if register_model:
                registration = publish(config, tracker, final.ensemble, best, data, final, weights)
        if registration:  # the UI shows the model on the parent run; the winning trial and the run point at it
            pointer = f"{registration.name}/{registration.version}"
            tracker.tag_trial(best.trial_id, "registered_model_version", pointer)
            tracker.set_tags({"registered_model_version": pointer})
        tracker.set_tags({"mlflow.note.content": leaderboard_markdown(
            name, data, best, trials, comparison, summary, registration)})
        import mlflow

        from videoclf.console import tune_summary

        print(tune_summary(tracking_uri=mlflow.get_tracking_uri(), experiment=config.tracking.experiment_name,
                           experiment_id=tracker.experiment_id, run_id=tracker.parent_run_id,
                           registration=registration, evaluation=final.registered,
                           example_video=config.data.root / data.test.keys[0] if data.test.keys else None,
                           alias=config.tracking.champion_alias), flush=True)
    return SearchResult(search_id, tracker.parent_run_id if tracker else None, dict(best.hyperparameters.values),
                        float(best.score), final.registered, baselines, final, registration, trials,
                        dict(tuner.trial_seconds), tuner.tracking_seconds)
