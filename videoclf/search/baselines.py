"""Simple baselines scored beside every search, on the same features, folds and test split.

A search is only worth its cost if it beats what a few lines of scikit-learn
or the seed notebook get on the same data:

* ``pooled_logreg``: logistic regression on each clip's mean and spread of
  frame features (no notion of time: what appearance alone gets).
* ``step_stats_logreg``: logistic regression on seven numbers per clip, the
  statistics of the step size between consecutive frame features (how much
  the picture changes, not what it shows).
* ``motion_logreg``: logistic regression on each clip's mean, spread and
  first-half-minus-second-half trend of its motion-stream step descriptors
  (optical flow: direction, speed, zoom, rotation; needs ``motion.enabled``).
* ``seed_gru``: the seed notebook's GRU 16→8 (10 epochs, Adam 1e-4, batch 64,
  no normalisation).

Each is selected the way a trial is (same folds, same score), then refitted on
all training videos and tested once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoclf.dataset import Fold, SplitData
from videoclf.errors import DataError
from videoclf.evaluation import Evaluation, evaluate_probabilities, standard_error
from videoclf.search.crossval import cross_validate

DESCRIPTIONS = {
    "pooled_logreg": "pooled logistic regression (mean+std of frame features)",
    "step_stats_logreg": "step-size statistics + logistic regression (7 numbers a clip)",
    "motion_logreg": "motion-stream statistics + logistic regression (flow mean, std, trend)",
    "seed_gru": "seed notebook model (GRU 16→8, 10 epochs)",
}
LOGREG_C = (0.01, 0.1, 1.0)


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's selection score (same protocol as the trials) and its test evaluation."""

    name: str
    validation: float
    test: Evaluation
    detail: str
    validation_se: float = 0.0  # standard error of ``validation`` over folds

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]


def _real_frames(data: SplitData) -> list[np.ndarray]:
    return [seq[:n].astype(np.float64) for seq, n in zip(data.features, data.cached_frames)]


def pooled_features(data: SplitData) -> np.ndarray:
    """Mean and standard deviation of each clip's real frame features."""
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) if len(f) else
                     np.zeros(2 * data.features.shape[-1]) for f in _real_frames(data)])


def step_statistics(data: SplitData) -> np.ndarray:
    """Seven numbers a clip from its step sizes ``|x[t] - x[t-1]|``: mean, spread, min, max, median,
    how much odd and even steps differ, and how much consecutive steps differ."""
    rows = []
    for frames in _real_frames(data):
        steps = np.linalg.norm(np.diff(frames, axis=0), axis=1)
        if len(steps) == 0:
            rows.append(np.zeros(7))
            continue
        odd, even = steps[1::2], steps[0::2]
        odd_even = abs(odd.mean() - even.mean()) if len(odd) else 0.0
        jitter = np.abs(np.diff(steps)).mean() if len(steps) > 1 else 0.0
        rows.append(np.array([steps.mean(), steps.std(), steps.min(), steps.max(), np.median(steps), odd_even,
                              jitter]))
    return np.stack(rows)


def motion_statistics_features(data: SplitData) -> np.ndarray:
    """Mean, spread and trend of each clip's motion steps (videoclf.features.motion.clip_statistics)."""
    from videoclf.features.motion import clip_statistics

    if data.motion is None:
        raise DataError("The motion_logreg baseline needs the motion stream: set motion.enabled: true")
    return np.stack([clip_statistics(m[:n], v[:n]) for m, v, n in
                     zip(data.motion, data.motion_valid, data.cached_frames)])


def _logreg(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _probabilities(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Class probabilities in vocabulary order (a class missing from training gets 0)."""
    out = np.zeros((len(x), num_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def logistic_regression(name: str, featurize, folds: list[Fold], train: SplitData, test: SplitData,
                        classes: tuple[str, ...]) -> BaselineResult:
    """Picks C on the folds (mean validation accuracy), refits on all of ``train``, tests once."""
    fold_data = [(featurize(f.train), f.train.labels, featurize(f.validation), f.validation.labels) for f in folds]
    folds_scores = {c: [float((_logreg(c).fit(x, y).predict(vx) == vy).mean()) for x, y, vx, vy in fold_data]
                    for c in LOGREG_C}
    scores = {c: float(np.mean(values)) for c, values in folds_scores.items()}
    best_c = max(LOGREG_C, key=lambda c: (scores[c], -c))
    model = _logreg(best_c).fit(featurize(train), train.labels)
    test_eval = evaluate_probabilities(_probabilities(model, featurize(test), len(classes)), test.labels, classes)
    return BaselineResult(name, scores[best_c], test_eval, f"C={best_c}", standard_error(folds_scores[best_c]))


def seed_gru(folds: list[Fold], train: SplitData, test: SplitData, classes: tuple[str, ...], length: int,
             seed: int) -> BaselineResult:
    """The seed notebook's model, scored by the same cross-validation as a trial."""
    import keras

    from videoclf.fitting import fit_arrays
    from videoclf.model import build_sequence_model

    def build():
        return build_sequence_model(num_features=train.features.shape[-1], num_classes=len(classes), family="gru",
                                    inputs="frames", gru_units=(16, 8), dropout=0.4, dense_units=8,
                                    learning_rate=1e-4)

    def fit(model, data: SplitData, validation: SplitData | None = None, **kwargs):
        validation_data = (validation.sequences(length), validation.labels) if validation is not None else None
        return fit_arrays(model, data.sequences(length), data.labels, batch_size=64, validation_data=validation_data,
                          **kwargs)

    result = cross_validate(build, lambda model, fold, **kw: fit(model, fold.train, fold.validation, **kw), folds,
                            epochs=10, objective="val_accuracy", seed=seed)
    keras.utils.set_random_seed(seed)
    model = build()
    fit(model, train, epochs=result.best_epoch + 1, verbose=0)
    probabilities = model.predict(test.sequences(length), verbose=0)
    return BaselineResult("seed_gru", result.score, evaluate_probabilities(probabilities, test.labels, classes),
                          f"{result.best_epoch + 1} epochs", standard_error(result.fold_scores))


def run_baselines(names: list[str], folds: list[Fold], train: SplitData, test: SplitData, classes: tuple[str, ...],
                  max_length: int, seed: int) -> list[BaselineResult]:
    """The configured baselines, in order."""
    out = []
    for name in names:
        if name == "pooled_logreg":
            out.append(logistic_regression(name, pooled_features, folds, train, test, classes))
        elif name == "step_stats_logreg":
            out.append(logistic_regression(name, step_statistics, folds, train, test, classes))
        elif name == "motion_logreg":
            out.append(logistic_regression(name, motion_statistics_features, folds, train, test, classes))
        else:
            out.append(seed_gru(folds, train, test, classes, max_length, seed))
    return out
