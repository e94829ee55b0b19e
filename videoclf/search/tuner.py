"""KerasTuner tuners (random, Bayesian, Hyperband) whose trials are cross-validated and tracked in MLflow.

Each tuner is a named subclass that overrides KerasTuner's hooks
(``run_trial``, ``on_trial_begin``, ``on_trial_end``); its state (folds,
tracker) comes through the constructor. Tracking lives in those hooks, not in
Keras callbacks: KerasTuner deep-copies callbacks for every execution, and an
MLflow client does not belong in a copy.

In KerasTuner's distributed mode the chief serves the oracle with trial leases
and workers hold them (``videoclf.search.leases``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import keras_tuner as kt

from videoclf.config import Config
from videoclf.dataset import Fold
from videoclf.search.crossval import OUT_OF_FOLD_FILE, OUT_OF_FOLD_TABLE, cross_validate
from videoclf.search.leases import LEASES_FILE, RECORDED, SEARCH_OVER_FILE, LeaseBook, SearchOver, hold_leases, serve
from videoclf.tracking import NullTracker, SearchTracker

FOLD_CHECKPOINTS = "folds"  # a trial directory's folder of finished folds (cross_validate's checkpoints)


class CrossValidatedTuner:
    """Scores each trial by :func:`cross_validate` over ``folds``; logs it to MLflow and prints one line."""

    def __init__(self, *, folds: list[Fold], epochs: int, patience: int | None, trial_seed: int, executions: int,
                 tracker: SearchTracker | NullTracker, max_trials_hint: int = 0, classes: tuple[str, ...] = (),
                 lease_seconds: float = 30.0, trial_attempts: int = 3, trial_timeout: float | None = None,
                 trial_progress_timeout: float | None = None, **kwargs):
        super().__init__(**kwargs)
        from keras_tuner.src.distribute.oracle_client import OracleClient

        self.lease_seconds, self.trial_attempts = lease_seconds, trial_attempts
        self.trial_timeout, self.trial_progress_timeout = trial_timeout, trial_progress_timeout
        # a worker holds leases on its trials; the chief keeps the book (search())
        self.lease = hold_leases(self.oracle, lease_seconds, str(Path(self.project_dir) / SEARCH_OVER_FILE)) \
            if isinstance(self.oracle, OracleClient) else None
        self.folds = folds
        self.classes = classes
        self.epochs = epochs
        self.patience = patience
        self.trial_seed = trial_seed
        self.executions = executions
        self.tracker = tracker
        self.max_trials_hint = max_trials_hint
        self.trial_seconds: dict[str, float] = {}
        self._checkpoints: Path | None = None  # the running trial's finished folds (_fold_checkpoints)
        self.tracking_seconds = 0.0  # time spent in MLflow calls during trials

    def _track(self, call, *args) -> None:
        started = time.perf_counter()
        call(*args)
        self.tracking_seconds += time.perf_counter() - started

    def _callbacks(self) -> list:
        objective = self.oracle.objective.name
        # in distributed mode the chief keeps the time limits (and hands the trial to another worker)
        lease = [_LeaseCheck(self.lease)] if self.lease is not None else (
            [_TrialClock(self.trial_timeout, self._trial_clock)] if self.trial_timeout else [])
        if not self.patience:
            return lease
        return lease + [keras.callbacks.EarlyStopping(monitor=objective, mode=self.oracle.objective.direction,
                                                      patience=self.patience)]

    def search(self, *args, **kwargs):
        """A worker searches as KerasTuner does; the chief serves the oracle with leases until the budget is done."""
        from keras_tuner.src.distribute import utils as distribute

        if not distribute.is_chief_oracle():
            try:
                return super().search(*args, **kwargs)
            except SearchOver as over:  # started (or back) after its chief served the whole budget
                print(over, flush=True)
                return None
            finally:
                if self.lease is not None:
                    self.lease.stop_beating()
        import os

        self.save()
        book = LeaseBook(self.oracle, self.lease_seconds, self.trial_attempts,
                         on_lost=lambda trial_id, reason, failed: self.tracker.trial_runs_lost(trial_id, reason),
                         trial_timeout=self.trial_timeout, progress_timeout=self.trial_progress_timeout,
                         path=os.path.join(self.oracle._project_dir, LEASES_FILE))
        serve(self.oracle, book, f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        weights = []

        def build():
            model = self.hypermodel.build(hp)
            weights[:] = [model.count_params()]
            return model

        epochs = int(hp.values.get("tuner/epochs", self.epochs))
        checkpoints = self._fold_checkpoints(trial.trial_id, hp.values, epochs)
        result = cross_validate(
            build,
            lambda model, fold, **fit_kwargs: self.hypermodel.fit(hp, model, fold.train, fold.validation,
                                                                   **fit_kwargs),
            self.folds, epochs=epochs, objective=self.oracle.objective.name,
            seed=self.trial_seed, executions=self.executions, callbacks=self._callbacks,
            validation_inputs=lambda fold: self.hypermodel.validation_inputs(hp, fold.validation),
            checkpoints=checkpoints)
        if result.resumed_folds:
            print(f"trial {trial.trial_id}: {result.resumed_folds} of {len(self.folds) * self.executions} folds read "
                  f"back from an earlier attempt ({checkpoints})", flush=True)
        if self.lease is not None:
            self.lease.check()  # a lost attempt logs nothing more
        if not weights:  # every fold was read back from an earlier attempt: no model was built to count
            build()
        self._track(self.tracker.trial_curves, trial.trial_id, result.curves, result.fold_scores)
        self._keep_out_of_fold(trial.trial_id, result.out_of_fold)
        return {**result.metrics(), "n_weights": float(weights[0])}

    def _fold_checkpoints(self, trial_id: str, values: dict, epochs: int) -> Path:
        """Where this trial's finished folds wait for a later attempt (another worker's, or this search resumed):
        its trial directory on the shared tuning folder, keyed by what the folds' training depends on."""
        import hashlib
        import json

        key = json.dumps({"values": values, "epochs": epochs, "seed": self.trial_seed, "executions": self.executions,
                          "folds": [len(f.validation) for f in self.folds]}, sort_keys=True, default=str)
        self._checkpoints = Path(self.get_trial_dir(trial_id)) / \
            f"{FOLD_CHECKPOINTS}-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}"
        return self._checkpoints

    def _keep_out_of_fold(self, trial_id: str, out_of_fold) -> None:
        """The trial's out-of-fold probabilities: in its trial directory (the chief's selection reads them there,
        whichever worker ran it) and as a table on its MLflow run."""
        folder = Path(self.get_trial_dir(trial_id))
        folder.mkdir(parents=True, exist_ok=True)
        out_of_fold.save(folder / OUT_OF_FOLD_FILE)
        table = folder / OUT_OF_FOLD_TABLE
        out_of_fold.table(self.folds, self.classes).to_csv(table, index=False)
        self._track(self.tracker.trial_file, trial_id, table)

    def on_trial_begin(self, trial):
        self._trial_clock = time.perf_counter()  # trial time includes its tracking
        if self.lease is not None:
            self.lease.began(trial.trial_id)
        super().on_trial_begin(trial)
        self._track(self.tracker.trial_started, trial.trial_id, trial.hyperparameters.values)

    def on_trial_end(self, trial):
        lease = self.lease
        try:
            if lease is None or not lease.lost:
                super().on_trial_end(trial)  # raises when too many trials failed in a row: the run still ends
        finally:
            if lease is not None and lease.lost:  # (known before, or from the refused result)
                self._track(self.tracker.trial_lost, trial.trial_id, f"{self.lease.tuner_id}'s attempt "
                            f"{lease.attempt} lost its lease; another worker runs the trial")
                print(f"trial {trial.trial_id}: this worker's attempt lost its lease (the chief did not hear from it "
                      f"within {self.lease_seconds:g} s); another worker runs it", flush=True)
                lease.ended()
                return
            if lease is not None:
                lease.ended()
            trial = self.oracle.get_trial(trial.trial_id)
            if self._checkpoints is not None and str(trial.status) in RECORDED:  # never run again: folds not needed
                shutil.rmtree(self._checkpoints, ignore_errors=True)
            self._track(self.tracker.trial_ended, trial.trial_id, str(trial.status), trial.score,
                        best_epoch_of(trial), trial.message)
            self.trial_seconds[trial.trial_id] = time.perf_counter() - self._trial_clock
            _print_trial(trial, self.oracle, self.trial_seconds[trial.trial_id], self.max_trials_hint)


class _LeaseCheck(keras.callbacks.Callback):
    """Stops a trial whose attempt lost its lease, at the next epoch's end."""

    def __init__(self, lease):
        super().__init__()
        self.lease = lease

    def on_epoch_end(self, epoch, logs=None):
        self.lease.progressed()
        self.lease.check()

    def __deepcopy__(self, memo):  # KerasTuner copies callbacks per execution: the lease stays shared
        return _LeaseCheck(self.lease)


class _TrialClock(keras.callbacks.Callback):
    """Stops a trial past ``tuning.trial_timeout`` at the next epoch's end: it ends FAILED saying so."""

    def __init__(self, seconds: float, started: float):
        super().__init__()
        self.seconds, self.started = seconds, started  # the trial's start (perf_counter), shared by its folds

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.started > self.seconds:
            raise kt.errors.FailedTrialError(f"stopped after {time.perf_counter() - self.started:.0f} s, past "
                                             f"tuning.trial_timeout ({self.seconds:g} s)")


class FirstTrialsRandomOracle(kt.oracles.RandomSearchOracle):
    """Random search whose first trials are drawn among the values matching ``first_trials`` (partial dicts).

    So a small budget surely covers the families and inputs that matter
    (motion statistics, appearance, order) before it spends the rest at random.
    """

    def __init__(self, first_trials: list[dict] = (), max_draws: int = 5000, **kwargs):
        super().__init__(**kwargs)
        self.first_trials = list(first_trials)
        self.max_draws = max_draws

    def populate_space(self, trial_id):
        index = int(trial_id) if str(trial_id).isdigit() else len(self.first_trials)
        if index >= len(self.first_trials):
            return super().populate_space(trial_id)
        wanted = self.first_trials[index]
        for _ in range(self.max_draws):
            values = self._random_values()
            if values is None:
                break
            if all(values.get(key) == value for key, value in wanted.items()):
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
        return super().populate_space(trial_id)


class TrackedRandomSearch(CrossValidatedTuner, kt.Tuner):
    """Random search (first trials from ``tuning.first_trials``), cross-validated and tracked."""

    def __init__(self, *, objective, max_trials: int, seed: int, first_trials: list[dict] = (), **kwargs):
        oracle = FirstTrialsRandomOracle(first_trials, objective=objective, max_trials=max_trials, seed=seed)
        super().__init__(oracle=oracle, **kwargs)


class TrackedBayesianOptimization(CrossValidatedTuner, kt.BayesianOptimization):
    """Bayesian optimisation (Gaussian process), cross-validated and tracked."""


class TrackedHyperband(CrossValidatedTuner, kt.Hyperband):
    """Hyperband: each bracket's trial trains from scratch for its ``tuner/epochs`` budget."""


TUNERS = {"random": TrackedRandomSearch, "bayesian": TrackedBayesianOptimization, "hyperband": TrackedHyperband}


def best_epoch_of(trial) -> int | None:
    """The 0-based epoch a finished trial's score was read at (its final model trains one more than this)."""
    if trial.metrics.exists("best_epoch"):
        return int(trial.metrics.get_last_value("best_epoch"))
    return None


def _short(values: dict) -> str:
    names = {"family": "", "streams": "stream", "inputs": "in", "pooling": "pool", "temporal_centering": "center", "frame_units": "proj",
             "input_dropout": "indrop", "conv_filters": "conv", "conv_layers": "layers", "kernel_size": "k",
             "bidirectional": "bi", "attention_units": "att", "seq_length": "len", "batch_size": "batch",
             "learning_rate": "lr", "dropout": "drop", "recurrent_dropout": "rdrop", "dense_units": "dense",
             "normalize": "norm"}
    units = "→".join(str(values[k]) for k in sorted(values) if k.startswith("gru_units_"))
    parts = [f"gru={units}"] if units else []
    for key, label in names.items():
        if key in values:
            value = values[key]
            text = f"{value:.2g}" if isinstance(value, float) else str(value)
            parts.append(f"{label}={text}" if label else text)
    return " ".join(parts)


def _print_trial(trial, oracle, seconds: float, max_trials: int) -> None:
    best = oracle.get_best_trials(1)
    best_score = best[0].score if best and best[0].score is not None else float("nan")
    score = f"{trial.score:.3f}" if trial.score is not None else "  -  "
    total = f"/{max_trials}" if max_trials else ""
    print(f"trial {trial.trial_id}{total} {str(trial.status):9s} val={score} best={best_score:.3f} "
          f"{seconds:5.1f}s  {_short(trial.hyperparameters.values)}", flush=True)


def make_tuner(config: Config, hypermodel: kt.HyperModel, folds: list[Fold], tracker: SearchTracker | NullTracker,
               project_name: str, classes: tuple[str, ...] = ()):
    """The configured tuner type over ``folds``."""
    tuning, training = config.tuning, config.training
    common = dict(hypermodel=hypermodel, objective=kt.Objective(tuning.objective, direction=direction(tuning.objective)),
                  seed=tuning.seed, directory=str(tuning.directory), project_name=project_name,
                  overwrite=tuning.overwrite, folds=folds, epochs=training.epochs, trial_seed=training.seed,
                  patience=training.early_stopping_patience, executions=tuning.executions_per_trial,
                  tracker=tracker, classes=tuple(classes), lease_seconds=tuning.lease_seconds,
                  trial_attempts=tuning.trial_attempts, trial_timeout=tuning.trial_timeout,
                  trial_progress_timeout=tuning.trial_progress_timeout)
    if tuning.tuner == "hyperband":
        return TrackedHyperband(max_epochs=training.epochs, factor=3, **common)
    if tuning.tuner == "random":
        common["first_trials"] = tuning.first_trials
    return TUNERS[tuning.tuner](max_trials=tuning.max_trials, max_trials_hint=tuning.max_trials, **common)


def direction(objective: str) -> str:
    return "min" if objective.endswith("loss") else "max"
