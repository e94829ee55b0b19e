"""Step 3 of the job: what the selection rule chose, refitted on all training videos and tested.

A trial is refitted once per seed (``tuning.final_seeds``) and its seeds' mean
probabilities are its model (a deep ensemble: less variance between seeds,
better calibrated); a baseline was already refitted by its own step. The
registered model is the selection's members with their weights. The best
single trial is always refitted and tested too, so the report can set the
registered model beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from videoclf.config import Config
from videoclf.evaluation import Evaluation, evaluate_probabilities
from videoclf.model import seed_ensemble
from videoclf.search.baselines import BaselineResult
from videoclf.search.hypermodel import SequenceHyperModel, trial_stream
from videoclf.search.prepare import PreparedData
from videoclf.search.select import Selection
from videoclf.search.tuner import best_epoch_of


@dataclass(frozen=True)
class Member:
    """One model of the registered model, refitted on all training videos: a Keras sequence model (a trial's
    seed ensemble, the seed GRU) or a ``videoclf.summaries.LinearHead``, and what it reads."""

    name: str
    weight: float
    model: object
    stream: str
    seq_length: int
    test_probabilities: np.ndarray


@dataclass(frozen=True)
class RefittedTrial:
    """A trial refitted with each of ``tuning.final_seeds`` seeds, and their mean."""

    models: list  # one per seed
    evaluations: list[Evaluation]  # each seed's, on test
    ensemble: object  # the seeds' mean probabilities (the only seed's model when there is one)
    ensemble_evaluation: Evaluation
    test_probabilities: np.ndarray
    stream: str
    seq_length: int

    def member(self, name: str, weight: float) -> Member:
        return Member(name, weight, self.ensemble, self.stream, self.seq_length, self.test_probabilities)


@dataclass(frozen=True)
class FinalModels:
    """The best single trial refitted (``models`` … ``ensemble_evaluation``, as before selection rules existed)
    and the registered model: the selection's members, their weights and its test evaluation."""

    models: list
    evaluations: list[Evaluation]
    ensemble: object
    ensemble_evaluation: Evaluation
    selection: Selection | None = None
    members: tuple[Member, ...] = ()
    registered_evaluation: Evaluation | None = None

    @property
    def registered(self) -> Evaluation:
        return self.registered_evaluation or self.ensemble_evaluation

    @property
    def best_trial(self) -> Evaluation:
        return self.ensemble_evaluation

    @property
    def registers_best_trial(self) -> bool:
        single = self.selection.single if self.selection else None
        return self.selection is None or (single is not None and single.kind == "trial" and
                                          len(self.members) == 1 and self.members[0].model is self.ensemble)

    def seed_metrics(self) -> dict[str, float]:
        """The best trial's seeds, each alone on test."""
        accuracies = [e.accuracy for e in self.evaluations]
        return {"test_accuracy_seed_mean": float(np.mean(accuracies)),
                "test_accuracy_seed_std": float(np.std(accuracies)), "final_seeds": len(accuracies),
                **{f"test_accuracy_seed_{i}": a for i, a in enumerate(accuracies)}}


def refit_trial(config: Config, hypermodel: SequenceHyperModel, trial, data: PreparedData) -> RefittedTrial:
    """Trains a trial's configuration on all training videos for its chosen epoch count, once per seed."""
    import keras

    epochs = (best_epoch_of(trial) or 0) + 1
    hp = trial.hyperparameters
    length, stream = int(hp.get("seq_length")), trial_stream(hp)

    def on_test(model) -> np.ndarray:  # averaged over the test videos' views
        return data.test.view_mean(lambda view: model.predict(view.inputs(length, stream), verbose=0))

    models, evaluations = [], []
    for seed in range(config.tuning.final_seeds):
        keras.utils.set_random_seed(config.training.seed + seed)
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, data.train, epochs=epochs, verbose=0)
        probabilities = on_test(model)
        models.append(model)
        evaluations.append(evaluate_probabilities(probabilities, data.test.labels, data.vocabulary.classes))
    ensemble = seed_ensemble(models)
    probabilities = on_test(ensemble)
    together = evaluate_probabilities(probabilities, data.test.labels, data.vocabulary.classes)
    return RefittedTrial(models, evaluations, ensemble, together, probabilities, stream, length)


def refit_winner(config: Config, hypermodel: SequenceHyperModel, best, data: PreparedData) -> FinalModels:
    """The best trial refitted (the registered model before a selection is applied)."""
    refit = refit_trial(config, hypermodel, best, data)
    return FinalModels(refit.models, refit.evaluations, refit.ensemble, refit.ensemble_evaluation,
                       members=(refit.member(f"trial {best.trial_id}", 1.0),))


def compose(config: Config, hypermodel: SequenceHyperModel, selection: Selection, best_final: FinalModels,
            trials: dict, baselines: list[BaselineResult], data: PreparedData) -> FinalModels:
    """The selection's members refitted (the best trial's refit reused) and their weighted mean tested."""
    by_name = {b.name: b for b in baselines}
    members = []
    for candidate, weight in selection.members:
        if candidate.kind == "baseline":
            b = by_name[candidate.key]
            members.append(Member(candidate.name, weight, b.model, b.stream, b.seq_length, b.test_probabilities))
        elif candidate.name == best_final.members[0].name:
            members.append(dataclasses.replace(best_final.members[0], weight=weight))
        else:
            members.append(refit_trial(config, hypermodel, trials[candidate.key], data).member(candidate.name, weight))
    probabilities = sum(m.weight * np.asarray(m.test_probabilities, np.float64) for m in members)
    registered = evaluate_probabilities(probabilities, data.test.labels, data.vocabulary.classes)
    return FinalModels(best_final.models, best_final.evaluations, best_final.ensemble, best_final.ensemble_evaluation,
                       selection, tuple(members), registered)

