"""Scoring one configuration by cross-validation, and refitting it on all training videos.

One function scores every candidate the same way (search trials and Keras
baselines alike): train a fresh model on each fold, average the per-epoch
validation curves over folds, take the best epoch of the mean curve. The
score is the mean curve there; the final model trains on every training
video for that many epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from videoclf.dataset import Fold
from videoclf.evaluation import standard_error

KERAS_TO_TRACKED = {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "val_loss",
                    "val_accuracy": "val_accuracy"}


@dataclass(frozen=True)
class CrossValidation:
    """Mean per-epoch curves over folds (tracked names), the chosen epoch and the score there."""

    curves: dict[str, list[float]]
    best_epoch: int  # 0-based
    score: float
    fold_scores: list[float]
    objective: str

    def metrics(self) -> dict[str, float]:
        """What the trial reports to KerasTuner's oracle (the objective first)."""
        out = {self.objective: self.score, "best_epoch": float(self.best_epoch),
               "score_std": float(np.std(self.fold_scores))}
        if len(self.fold_scores) > 1:
            out["score_se"] = standard_error(self.fold_scores)
        for name in ("val_accuracy", "val_loss"):
            if name in self.curves and name != self.objective:
                out[name] = self.curves[name][self.best_epoch]
        return out


def _mean_curves(histories: list[dict[str, list[float]]]) -> dict[str, np.ndarray]:
    """Averages per-epoch histories over folds; a fold that stopped early keeps its last value."""
    epochs = max(len(values) for history in histories for values in history.values())
    out = {}
    for keras_name, name in KERAS_TO_TRACKED.items():
        rows = [np.pad(h[keras_name], (0, epochs - len(h[keras_name])), mode="edge")
                for h in histories if h.get(keras_name)]
        if rows:
            out[name] = np.mean(rows, axis=0)
    return out


def best_epoch(curves: dict[str, np.ndarray], objective: str) -> int:
    """The objective's best epoch on the mean curve; accuracy ties go to the lowest validation loss."""
    if objective == "val_loss":
        return int(np.argmin(curves["val_loss"]))
    accuracy = curves[objective]
    tied = np.flatnonzero(accuracy >= accuracy.max() - 1e-9)
    if "val_loss" in curves:
        return int(tied[np.argmin(curves["val_loss"][tied])])
    return int(tied[0])


def cross_validate(build: Callable, fit: Callable, folds: list[Fold], *, epochs: int, objective: str, seed: int,
                   executions: int = 1, callbacks: Callable[[], list] = list) -> CrossValidation:
    """Trains ``build()`` on every fold (``executions`` seeds each) and scores the mean curve.

    ``fit(model, fold, epochs=, callbacks=, verbose=)`` must return a Keras History.
    """
    import keras

    histories, shared = [], None
    for execution in range(executions):
        for index, fold in enumerate(folds):
            keras.utils.set_random_seed(seed + 1000 * execution + index)
            model = build()  # this fold's initial weights and dropout seeds
            shared = shared or _TracedModel(model)
            histories.append(fit(shared.starting_as(model), fold, epochs=epochs, callbacks=callbacks(),
                                 verbose=0).history)
    curves = _mean_curves(histories)
    if objective not in curves:
        raise ValueError(f"Expected the objective {objective!r} among the training metrics. "
                         f"Received: {sorted(curves)}")
    epoch = best_epoch(curves, objective)
    keras_objective = next(k for k, v in KERAS_TO_TRACKED.items() if v == objective)
    fold_scores = [float(np.pad(h[keras_objective], (0, epoch + 1), mode="edge")[epoch]) for h in histories]
    return CrossValidation({k: [float(v) for v in values] for k, values in curves.items()}, epoch,
                           float(curves[objective][epoch]), fold_scores, objective)


class _TracedModel:
    """One compiled model trained on every fold: each fold's freshly built model only lends its initial state
    (weights, dropout seed states), and the optimizer starts again from zero. Keras then traces its training and
    validation steps once per trial instead of once per fold; the histories are identical (tests/test_search.py)."""

    def __init__(self, model):
        self.model = model
        model.optimizer.build(model.trainable_variables)
        self.optimizer_start = [variable.numpy() for variable in model.optimizer.variables]

    def starting_as(self, fresh):
        if fresh is self.model:  # the first fold's model is the shared one
            return self.model
        for variable, initial in zip(self.model.variables, fresh.variables, strict=True):
            variable.assign(initial.value)
        for variable, initial in zip(self.model.optimizer.variables, self.optimizer_start, strict=True):
            variable.assign(initial)
        return self.model

