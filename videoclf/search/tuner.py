"""KerasTuner tuners (random, Bayesian, Hyperband) that report every trial to MLflow.

Tracking lives in the tuner's own hooks (``on_trial_begin``, ``on_epoch_end``,
``on_trial_end``), not in Keras callbacks: KerasTuner deep-copies callbacks
for every execution, and an MLflow client does not belong in a copy.
"""

from __future__ import annotations

import time

import keras
import keras_tuner as kt

from videoclf.config import Config
from videoclf.tracking import SearchTracker

TUNERS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}


class TrackingMixin:
    """Adds MLflow runs and a one-line progress report per trial to a KerasTuner tuner."""

    tracker: SearchTracker | None = None
    max_trials_hint: int = 0
    trial_seconds: dict[str, float]

    tracking_seconds: float = 0.0  # time spent in MLflow calls during trials

    def _track(self, call, *args) -> None:
        started = time.perf_counter()
        call(*args)
        self.tracking_seconds += time.perf_counter() - started

    def on_trial_begin(self, trial):
        self._trial_clock = time.perf_counter()  # trial time includes its tracking
        super().on_trial_begin(trial)
        if self.tracker:
            self._track(self.tracker.trial_started, trial.trial_id, trial.hyperparameters.values)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs)
        if self.tracker and logs:
            self._track(self.tracker.epoch_ended, trial.trial_id, epoch, logs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        trial = self.oracle.get_trial(trial.trial_id)
        status = str(trial.status)
        if self.tracker:
            self._track(self.tracker.trial_ended, trial.trial_id, status, trial.score, trial.best_step,
                        trial.message)
        self.trial_seconds[trial.trial_id] = time.perf_counter() - self._trial_clock
        _print_trial(trial, self.oracle, self.trial_seconds[trial.trial_id], self.max_trials_hint)


def _short(values: dict) -> str:
    names = {"num_gru_layers": None, "temporal_centering": "center", "frame_units": "proj",
             "input_dropout": "indrop", "seq_length": "len", "batch_size": "batch", "learning_rate": "lr",
             "dropout": "drop", "recurrent_dropout": "rdrop", "dense_units": "dense", "normalize": "norm"}
    units = "→".join(str(values[k]) for k in sorted(values) if k.startswith("gru_units_"))
    parts = [f"gru={units}"]
    for key, label in names.items():
        if label and key in values:
            value = values[key]
            parts.append(f"{label}={value:.2g}" if isinstance(value, float) else f"{label}={value}")
    return " ".join(parts)


def _print_trial(trial, oracle, seconds: float, max_trials: int) -> None:
    best = oracle.get_best_trials(1)
    best_score = best[0].score if best and best[0].score is not None else float("nan")
    score = f"{trial.score:.3f}" if trial.score is not None else "  -  "
    total = f"/{max_trials}" if max_trials else ""
    print(f"trial {trial.trial_id}{total} {str(trial.status):9s} val={score} best={best_score:.3f} "
          f"{seconds:5.1f}s  {_short(trial.hyperparameters.values)}", flush=True)


def make_tuner(config: Config, hypermodel: kt.HyperModel, tracker: SearchTracker | None, project_name: str):
    """The configured tuner type, with tracking mixed in."""
    tuning = config.tuning
    base = TUNERS[tuning.tuner]
    cls = type(f"Tracked{base.__name__}", (TrackingMixin, base), {})
    common = dict(hypermodel=hypermodel, objective=kt.Objective(tuning.objective, direction=_direction(tuning.objective)),
                  seed=tuning.seed, directory=str(tuning.directory), project_name=project_name,
                  overwrite=tuning.overwrite, executions_per_trial=tuning.executions_per_trial)
    if tuning.tuner == "hyperband":
        tuner = cls(max_epochs=config.training.epochs, factor=3, **common)
    else:
        tuner = cls(max_trials=tuning.max_trials, **common)
    tuner.tracker = tracker
    tuner.trial_seconds = {}
    tuner.max_trials_hint = tuning.max_trials if tuning.tuner != "hyperband" else 0
    return tuner


def _direction(objective: str) -> str:
    return "min" if objective.endswith("loss") else "max"


def training_callbacks(config: Config) -> list:
    """EarlyStopping with best-epoch weights restored (KerasTuner checkpoints the best epoch too)."""
    patience = config.training.early_stopping_patience
    if not patience:
        return []
    return [keras.callbacks.EarlyStopping(monitor=config.tuning.objective, mode=_direction(config.tuning.objective),
                                          patience=patience, restore_best_weights=True)]
