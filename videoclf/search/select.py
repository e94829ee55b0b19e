"""What gets registered: one rule (``tuning.select``) over every candidate, trials and baselines alike.

* ``best``: the candidate with the best selection score.
* ``one_se``: Breiman's one-standard-error rule (CART; Hastie, Tibshirani &
  Friedman, §7.10): among the candidates within one standard error of the
  best (the best's error over folds), the simplest. Simplicity: the baselines'
  linear models first, then the families ``pooled``, ``tcn``, ``gru``,
  ``attention``; within one rank, fewer weights first.
* ``ensemble``: Caruana et al. (2004) ensemble selection, the last step of
  auto-sklearn and AutoGluon: greedy forward selection, with replacement, of
  the candidates whose averaged out-of-fold probabilities score best. Its
  selection score is measured on the very predictions it was chosen on, so it
  is optimistic; the report says so.

Baselines are candidates only when the objective is ``val_accuracy`` (their
score is an accuracy). Candidates without out-of-fold predictions (trials of
a search made before they were kept) take part in ``best`` and ``one_se`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np

from videoclf.config import SelectionRule
from videoclf.evaluation import standard_error
from videoclf.search.crossval import OutOfFold
from videoclf.streams import APPEARANCE

RULES = get_args(SelectionRule)  # the vocabulary is the config's (one place)
SIMPLICITY = ("linear", "pooled", "tcn", "gru", "attention")  # simplest first; see the module's docstring
ENSEMBLE_STEPS = 20  # greedy additions (with replacement): weights in twentieths


@dataclass(frozen=True)
class Candidate:
    """A trial or a baseline as the selection rules see it."""

    kind: str  # "trial" or "baseline"
    key: str  # the trial id, or the baseline's name
    score: float
    se: float
    family: str  # a SIMPLICITY entry
    n_weights: int
    out_of_fold: OutOfFold | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return f"trial {self.key}" if self.kind == "trial" else f"baseline {self.key}"

    @property
    def simplicity(self) -> tuple[int, int]:
        rank = SIMPLICITY.index(self.family) if self.family in SIMPLICITY else len(SIMPLICITY)
        return rank, self.n_weights


@dataclass(frozen=True)
class Selection:
    """The registered model's recipe: candidates and their weights (summing to 1), its selection score and why."""

    rule: str
    members: tuple[tuple[Candidate, float], ...]
    score: float
    se: float
    reason: str
    optimistic: bool = False  # the score was measured on the predictions it was chosen on

    @property
    def single(self) -> Candidate | None:
        return self.members[0][0] if len(self.members) == 1 else None

    @property
    def key(self) -> str:
        """Identifies what is registered (a version's ``trial_id`` tag): a trial id as before, else a recipe."""
        if self.single is not None and self.single.kind == "trial":
            return self.single.key
        return "+".join(f"{c.name.replace(' ', ':')}*{w:.2f}" for c, w in self.members)

    def describe(self) -> str:
        if self.single is not None:
            return self.single.name
        return "ensemble of " + ", ".join(f"{c.name} ({w:.2f})" for c, w in self.members)


def trial_candidate(trial, se: float, out_of_fold: OutOfFold | None, n_weights: int) -> Candidate:
    """A completed KerasTuner trial as a candidate."""
    values = trial.hyperparameters.values
    return Candidate("trial", trial.trial_id, float(trial.score), se, values.get("family", "gru"), n_weights,
                     out_of_fold, f"{values.get('family')} on {values.get('streams', APPEARANCE)}")


def baseline_candidate(baseline) -> Candidate:
    """A baseline (``videoclf.search.baselines.BaselineResult``) as a candidate: the logistic regressions rank
    as linear models, the seed model as a GRU."""
    family = "gru" if baseline.name == "seed_gru" else "linear"
    return Candidate("baseline", baseline.name, baseline.validation, baseline.validation_se, family,
                     baseline.n_weights, baseline.out_of_fold, baseline.description)


def select(rule: str, candidates: list[Candidate], labels: np.ndarray, higher_is_better: bool = True) -> Selection:
    """Applies ``rule`` to ``candidates`` (at least one); ``labels``: the training split's (for ``ensemble``)."""
    if not candidates:
        raise ValueError("Expected at least one candidate to select from")
    if rule == "best":
        return _best(candidates, higher_is_better)
    if rule == "one_se":
        return one_standard_error(candidates, higher_is_better)
    if rule == "ensemble":
        return ensemble_selection(candidates, labels, higher_is_better)
    raise ValueError(f"Expected a selection rule among {RULES}. Received: {rule!r}")


def _sign(higher_is_better: bool) -> float:
    return 1.0 if higher_is_better else -1.0


def _top(candidates: list[Candidate], higher_is_better: bool) -> Candidate:
    """The best score; ties go to the simpler candidate."""
    sign = _sign(higher_is_better)
    return min(candidates, key=lambda c: (-sign * c.score, c.simplicity))


def _best(candidates: list[Candidate], higher_is_better: bool) -> Selection:
    top = _top(candidates, higher_is_better)
    return Selection("best", ((top, 1.0),), top.score, top.se,
                     f"the best selection score of {len(candidates)} candidates: {top.name} ({top.score:.3f})")


def one_standard_error(candidates: list[Candidate], higher_is_better: bool = True) -> Selection:
    """The simplest candidate whose score is within one standard error of the best's."""
    top = _top(candidates, higher_is_better)
    sign = _sign(higher_is_better)
    near = [c for c in candidates if sign * (top.score - c.score) <= top.se + 1e-12]
    chosen = min(near, key=lambda c: (c.simplicity, -sign * c.score))
    if chosen is top:
        why = (f"{top.name} has the best selection score ({top.score:.3f} ± {top.se:.3f}) and no simpler candidate "
               "is within one standard error of it")
    else:
        why = (f"the simplest of {len(near)} candidates within one standard error of the best ({top.name}, "
               f"{top.score:.3f} ± {top.se:.3f}): {chosen.name} ({chosen.score:.3f} ± {chosen.se:.3f})")
    return Selection("one_se", ((chosen, 1.0),), chosen.score, chosen.se, why)


def fold_scores(probabilities: np.ndarray, labels: np.ndarray, fold: np.ndarray, accuracy: bool = True
                ) -> list[float]:
    """Accuracy (or log loss) of ``probabilities`` on each fold's validated rows."""
    out = []
    for f in sorted(set(fold[fold >= 0].tolist())):
        p, y = probabilities[fold == f], labels[fold == f]
        out.append(float((p.argmax(axis=1) == y).mean()) if accuracy else _log_loss(p, y))
    return out


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def _quality(probabilities, labels, fold, accuracy: bool) -> tuple[float, float]:
    """Bigger is better: (mean accuracy over folds, -log loss), or (-log loss over folds, accuracy)."""
    if accuracy:
        return float(np.mean(fold_scores(probabilities, labels, fold))), -_log_loss(probabilities, labels)
    return -float(np.mean(fold_scores(probabilities, labels, fold, False))), float(
        (probabilities.argmax(axis=1) == labels).mean())


def ensemble_selection(candidates: list[Candidate], labels: np.ndarray, higher_is_better: bool = True,
                       steps: int = ENSEMBLE_STEPS) -> Selection:
    """Caruana's greedy forward selection with replacement over the candidates' out-of-fold probabilities.

    Each step adds the candidate that makes the running average score best (the objective over folds: mean
    accuracy, or log loss for a loss objective; the other breaks ties, then simplicity); the best ensemble seen
    over all steps is kept (the earliest, when later steps only tie it). ``labels``: the training split's.
    """
    pool = [c for c in candidates if c.out_of_fold is not None]
    if not pool:
        chosen = _best(candidates, higher_is_better)
        return Selection("ensemble", chosen.members, chosen.score, chosen.se, "no candidate kept out-of-fold "
                         f"predictions (a search from before they were kept): {chosen.reason}")
    fold = pool[0].out_of_fold.fold
    rows = fold >= 0
    predictions = [np.nan_to_num(c.out_of_fold.probabilities[rows].astype(np.float64)) for c in pool]
    y, where = np.asarray(labels)[rows], fold[rows]
    total, counts = np.zeros_like(predictions[0]), np.zeros(len(pool), np.int64)
    best_quality, best_counts = None, None
    for step in range(1, steps + 1):
        def gain(i):
            return (*_quality((total + predictions[i]) / step, y, where, higher_is_better),
                    tuple(-v for v in pool[i].simplicity))
        pick = max(range(len(pool)), key=gain)
        total += predictions[pick]
        counts[pick] += 1
        quality = _quality(total / step, y, where, higher_is_better)
        if best_quality is None or quality > best_quality:
            best_quality, best_counts = quality, counts.copy()
    mean = sum(best_counts[i] * predictions[i] for i in range(len(pool))) / best_counts.sum()
    scores = fold_scores(mean, y, where, higher_is_better)
    chosen = [i for i in np.argsort(-best_counts, kind="stable") if best_counts[i]]
    members = tuple((pool[i], float(best_counts[i] / best_counts.sum())) for i in chosen)
    described = ", ".join(f"{pool[i].name} ×{int(best_counts[i])}" for i in chosen)
    why = (f"greedy forward selection with replacement over {len(pool)} candidates' out-of-fold probabilities "
           f"({steps} steps, the best ensemble kept): {described}; its score is measured on the predictions it "
           "was chosen on, so it is optimistic")
    return Selection("ensemble", members, float(np.mean(scores)), standard_error(scores) if len(scores) > 1 else 0.0,
                     why, optimistic=True)
