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

Each is selected the way a trial is (same folds, same score, its out-of-fold
probabilities kept), then refitted on all training videos and tested once.
Each is a candidate for registration like a trial (``videoclf.search.select``):
a logistic regression registers as a :class:`videoclf.summaries.LinearHead`,
the seed model as its Keras model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoclf.dataset import Fold, SplitData
from videoclf.errors import DataError
from videoclf.evaluation import Evaluation, evaluate_probabilities, standard_error
from videoclf.search.crossval import OutOfFold, cross_validate
from videoclf.summaries import LinearHead, summarize
from videoclf.streams import APPEARANCE

DESCRIPTIONS = {
    "pooled_logreg": "pooled logistic regression (mean+std of frame features)",
    "step_stats_logreg": "step-size statistics + logistic regression (7 numbers a clip)",
    "motion_logreg": "motion-stream statistics + logistic regression (flow mean, std, trend)",
    "seed_gru": "seed notebook model (GRU 16→8, 10 epochs)",
}
SUMMARY_OF = {"pooled_logreg": "frame_mean_std", "step_stats_logreg": "step_size_statistics",
              "motion_logreg": "motion_statistics"}  # each logistic regression's input (videoclf.summaries)
LOGREG_C = (0.01, 0.1, 1.0)


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's selection score (same protocol as the trials), its test evaluation and, for selection and
    registration, its out-of-fold probabilities and its model refitted on all training videos."""

    name: str
    validation: float
    test: Evaluation
    detail: str
    validation_se: float = 0.0  # standard error of ``validation`` over folds
    out_of_fold: OutOfFold | None = None
    model: object = None  # LinearHead, or the seed model's Keras model
    stream: str = APPEARANCE
    seq_length: int = 0  # the cached length the model reads
    n_weights: int = 0
    test_probabilities: np.ndarray | None = None

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]


def summary_of(name: str, data: SplitData) -> np.ndarray:
    """``name``'s summary of each video's plain view."""
    if name == "motion_statistics" and data.motion is None:
        raise DataError("The motion_logreg baseline needs the motion stream: set motion.enabled: true")
    return summarize(name, data.features, data.cached_frames, data.motion, data.motion_valid)


def training_summaries(name: str, data: SplitData) -> tuple[np.ndarray, np.ndarray]:
    """``(summaries, labels)`` of every view of ``data``'s videos: what a logistic regression trains on."""
    every = data.every_view()
    return (np.concatenate([summary_of(name, v) for v in every]), np.concatenate([v.labels for v in every]))


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


def logistic_regression(name: str, folds: list[Fold], train: SplitData, test: SplitData,
                        classes: tuple[str, ...], length: int) -> BaselineResult:
    """Picks C on the folds (mean validation accuracy), refits on all of ``train``, tests once."""
    summary = SUMMARY_OF[name]
    fold_data = [(*training_summaries(summary, f.train), summary_of(summary, f.validation), f.validation.labels)
                 for f in folds]
    fitted = {c: [_logreg(c).fit(x, y) for x, y, _, _ in fold_data] for c in LOGREG_C}
    folds_scores = {c: [float((m.predict(vx) == vy).mean()) for m, (_, _, vx, vy) in zip(models, fold_data)]
                    for c, models in fitted.items()}
    scores = {c: float(np.mean(values)) for c, values in folds_scores.items()}
    best_c = max(LOGREG_C, key=lambda c: (scores[c], -c))
    out_of_fold = OutOfFold.from_folds(folds, [_probabilities(m, vx, len(classes)).astype(np.float32)
                                               for m, (_, _, vx, _) in zip(fitted[best_c], fold_data)])
    head = LinearHead.from_pipeline(summary, _logreg(best_c).fit(*training_summaries(summary, train)), len(classes))
    probabilities = test.view_mean(lambda view: head.probabilities(view.features, view.cached_frames, view.motion,
                                                                   view.motion_valid))
    return BaselineResult(name, scores[best_c], evaluate_probabilities(probabilities, test.labels, classes),
                          f"C={best_c}", standard_error(folds_scores[best_c]), out_of_fold, head, head.stream,
                          length, head.n_weights, probabilities)
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
        return fit_arrays(model, *data.training_inputs(length), batch_size=64, validation_data=validation_data,
                          **kwargs)

    result = cross_validate(build, lambda model, fold, **kw: fit(model, fold.train, fold.validation, **kw), folds,
                            epochs=10, objective="val_accuracy", seed=seed,
                            validation_inputs=lambda fold: fold.validation.sequences(length))
    keras.utils.set_random_seed(seed)
    model = build()
    fit(model, train, epochs=result.best_epoch + 1, verbose=0)
    probabilities = test.view_mean(lambda view: model.predict(view.sequences(length), verbose=0))
    return BaselineResult("seed_gru", result.score, evaluate_probabilities(probabilities, test.labels, classes),
                          f"{result.best_epoch + 1} epochs", standard_error(result.fold_scores), result.out_of_fold,
                          model, APPEARANCE, length, int(model.count_params()), probabilities)


def run_baselines(names: list[str], folds: list[Fold], train: SplitData, test: SplitData, classes: tuple[str, ...],
                  max_length: int, seed: int) -> list[BaselineResult]:
    """The configured baselines, in order."""
    return [logistic_regression(name, folds, train, test, classes, max_length) if name in SUMMARY_OF
            else seed_gru(folds, train, test, classes, max_length, seed) for name in names]
