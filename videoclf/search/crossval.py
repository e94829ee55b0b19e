"""Scoring one configuration by cross-validation, and refitting it on all training videos.

One function scores every candidate the same way (search trials and Keras
baselines alike): train a fresh model on each fold, average the per-epoch
validation curves over folds, take the best epoch of the mean curve. The
score is the mean curve there; the final model trains on every training
video for that many epochs.

Each fold's validation probabilities are kept at every epoch, so the
candidate's out-of-fold predictions at the chosen epoch exist too: what the
selection rules (``videoclf.search.select``) compare and combine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from videoclf.dataset import Fold
from videoclf.evaluation import standard_error

OUT_OF_FOLD_FILE = "out_of_fold.npz"  # in a trial's directory: what the selection rules read
OUT_OF_FOLD_TABLE = "out_of_fold.csv"  # on a trial's (or the parent's, for baselines) MLflow run
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
    out_of_fold: "OutOfFold | None" = None  # validation probabilities at ``best_epoch``, when asked for
    resumed_folds: int = 0  # folds read back from ``checkpoints`` (an earlier attempt trained them)

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
                   executions: int = 1, callbacks: Callable[[], list] = list,
                   validation_inputs: Callable[[Fold], np.ndarray] | None = None,
                   checkpoints: Path | None = None) -> CrossValidation:
    """Trains ``build()`` on every fold (``executions`` seeds each) and scores the mean curve.

    ``fit(model, fold, epochs=, callbacks=, verbose=)`` must return a Keras History. With ``validation_inputs``
    (a fold's validation inputs), the out-of-fold probabilities at the chosen epoch come back too. With
    ``checkpoints`` (a folder kept for this candidate), each finished fold is written there and a later call reads
    it back instead of training it again: an attempt that died, or a trial moved to another worker, loses at most
    the fold it was in. A fold trains the same whether or not the folds before it ran (each starts from its own
    seed's state), so the result is the uninterrupted one.
    """
    import keras

    histories, predictions, shared, resumed = [], [], None, 0
    rows = max(len(fold.validation) for fold in folds)  # every fold predicted at one shape: traced once
    for execution in range(executions):
        for index, fold in enumerate(folds):
            checkpoint = Path(checkpoints) / f"fold-{execution}-{index}.npz" if checkpoints is not None else None
            read = _read_fold(checkpoint) if checkpoint is not None and checkpoint.exists() else None
            if read is not None:
                history, epoch_predictions = read
                histories.append(history)
                predictions += [epoch_predictions] if validation_inputs else []
                resumed += 1
                continue
            keras.utils.set_random_seed(seed + 1000 * execution + index)
            model = build()  # this fold's initial weights and dropout seeds
            shared = shared or _TracedModel(model)
            recorder = [_epoch_predictions(validation_inputs(fold), rows)] if validation_inputs else []
            histories.append(fit(shared.starting_as(model), fold, epochs=epochs, callbacks=callbacks() + recorder,
                                 verbose=0).history)
            predictions += [r.epochs for r in recorder]
            if checkpoint is not None:
                _write_fold(checkpoint, histories[-1], recorder[0].epochs if recorder else None)
    curves = _mean_curves(histories)
    if objective not in curves:
        raise ValueError(f"Expected the objective {objective!r} among the training metrics. "
                         f"Received: {sorted(curves)}")
    epoch = best_epoch(curves, objective)
    keras_objective = next(k for k, v in KERAS_TO_TRACKED.items() if v == objective)
    fold_scores = [float(np.pad(h[keras_objective], (0, epoch + 1), mode="edge")[epoch]) for h in histories]
    out_of_fold = OutOfFold.at_epoch(folds, predictions, epoch) if predictions else None
    return CrossValidation({k: [float(v) for v in values] for k, values in curves.items()}, epoch,
                           float(curves[objective][epoch]), fold_scores, objective, out_of_fold, resumed)


def _write_fold(path: Path, history: dict[str, list[float]], epoch_predictions: list[np.ndarray] | None) -> None:
    """One finished fold (its Keras history, its validation probabilities after every epoch), written whole or not
    at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"history.{name}": np.asarray(values, np.float64) for name, values in history.items()}
    if epoch_predictions is not None:
        arrays["predictions"] = np.stack(epoch_predictions)
    _savez_whole(path, **arrays)


def _savez_whole(path: Path, **arrays) -> None:
    """``arrays`` into ``path`` whole or not at all (a temporary file renamed into place)."""
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


def _read_fold(path: Path) -> tuple[dict[str, list[float]], list[np.ndarray] | None] | None:
    """A finished fold written by :func:`_write_fold`; None (the fold trains again) when it cannot be read."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as stored:
            history = {name.removeprefix("history."): [float(v) for v in stored[name]]
                       for name in stored.files if name.startswith("history.")}
            epoch_predictions = list(stored["predictions"]) if "predictions" in stored.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return history, epoch_predictions


@dataclass(frozen=True)
class OutOfFold:
    """A candidate's validation probabilities for every training video it was validated on: ``probabilities``
    ``(N, C)`` (NaN where never validated) and ``fold`` ``(N,)`` (the fold that validated it, -1: none)."""

    probabilities: np.ndarray
    fold: np.ndarray

    @classmethod
    def from_folds(cls, folds: list[Fold], per_fold: list[np.ndarray]) -> "OutOfFold":
        """Each fold's validation probabilities placed at their rows of the training split."""
        total = len(folds[0].train) + len(folds[0].validation)
        out = np.full((total, per_fold[0].shape[-1]), np.nan, np.float32)
        which = np.full(total, -1, np.int64)
        for index, (fold, probabilities) in enumerate(zip(folds, per_fold)):
            fold.out_of_fold(total, probabilities, into=out)
            which[fold.validation_rows] = index
        return cls(out, which)

    @classmethod
    def at_epoch(cls, folds: list[Fold], recorded: list[list[np.ndarray]], epoch: int) -> "OutOfFold":
        """From per-epoch records (one list per execution × fold, in that order): each fold's probabilities at
        ``epoch`` (a fold that stopped early: its last epoch, as its curve is read), averaged over executions."""
        per_fold = []
        for index in range(len(folds)):
            runs = [epochs[min(epoch, len(epochs) - 1)] for epochs in recorded[index::len(folds)]]
            per_fold.append(np.mean(runs, axis=0))
        return cls.from_folds(folds, per_fold)

    def save(self, path) -> None:
        _savez_whole(Path(path), probabilities=self.probabilities, fold=self.fold)

    def table(self, folds: list[Fold], classes: tuple[str, ...]) -> pd.DataFrame:
        """One row per validated training video: its key, true label, fold and probability per class."""
        keys, labels = [""] * len(self.fold), [-1] * len(self.fold)
        for fold in folds:
            for row, key, label in zip(fold.validation_rows, fold.validation.keys, fold.validation.labels):
                keys[row], labels[row] = key, int(label)
        names = list(classes) or [f"class_{i}" for i in range(self.probabilities.shape[-1])]
        rows = np.flatnonzero(self.fold >= 0)
        table = pd.DataFrame(self.probabilities[rows], columns=names)
        table.insert(0, "fold", self.fold[rows])
        table.insert(0, "label", [names[labels[r]] for r in rows])
        table.insert(0, "video", [keys[r] for r in rows])
        return table

    @classmethod
    def load(cls, path) -> "OutOfFold":
        with np.load(path) as stored:
            return cls(stored["probabilities"], stored["fold"])


def _epoch_predictions(inputs: np.ndarray, rows: int):
    """A Keras callback keeping the validation probabilities after every epoch (``.epochs``): one batch of
    ``rows`` clips (``inputs`` then all-padding clips, whose answers are dropped) through the compiled predict
    step, so folds of different sizes share one trace."""
    import keras

    count = len(inputs)
    inputs = np.concatenate([inputs, np.zeros((rows - count, *inputs.shape[1:]), inputs.dtype)])

    class EpochPredictions(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[np.ndarray] = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(np.asarray(self.model.predict_on_batch(inputs), np.float32)[:count])

    return EpochPredictions()


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

