"""Step 3 of the job: the winning configuration refitted on all training videos, once per seed, and tested."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoclf.config import Config
from videoclf.evaluation import Evaluation, evaluate_probabilities
from videoclf.model import seed_ensemble
from videoclf.search.hypermodel import SequenceHyperModel, trial_stream
from videoclf.search.prepare import PreparedData
from videoclf.search.tuner import best_epoch_of


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


