"""KerasTuner HyperModel: ``build(hp)`` only reads hyperparameters; ``fit`` slices the cache.

The sequence length is a hyperparameter, but features are never re-extracted:
``fit`` cuts each trial's length from the cached maximum-length sequences.
"""

from __future__ import annotations

import keras_tuner as kt

from videoclf.config import FloatRange, SearchSpace
from videoclf.dataset import SplitData
from videoclf.model import build_sequence_model


def _number(hp: kt.HyperParameters, name: str, spec: FloatRange | list[float]) -> float:
    if isinstance(spec, FloatRange):
        return hp.Float(name, spec.min, spec.max, step=spec.step, sampling="log" if spec.log else "linear")
    return hp.Choice(name, list(spec))


class GRUHyperModel(kt.HyperModel):
    """Search space from the experiment YAML around :func:`build_sequence_model`."""

    def __init__(self, space: SearchSpace, num_features: int, num_classes: int, normalizer, train: SplitData,
                 validation: SplitData):
        super().__init__(name="gru_classifier")
        self.space = space
        self.num_features = num_features
        self.num_classes = num_classes
        self.normalizer = normalizer
        self.train = train
        self.validation = validation

    def declare(self, hp: kt.HyperParameters) -> dict:
        """Reads every hyperparameter once; returns the factory's keyword arguments."""
        space = self.space
        layers = hp.Choice("num_gru_layers", space.num_gru_layers)
        units = []
        for i in range(max(space.num_gru_layers)):
            with hp.conditional_scope("num_gru_layers", [n for n in space.num_gru_layers if n > i]):
                if layers > i:
                    units.append(hp.Choice(f"gru_units_{i}", space.gru_units[i]))
        hp.Choice("seq_length", space.seq_length)
        hp.Choice("batch_size", space.batch_size)
        normalize = hp.Choice("normalize", space.normalize)
        return dict(
            temporal_centering=hp.Choice("temporal_centering", space.temporal_centering),
            input_dropout=_number(hp, "input_dropout", space.input_dropout),
            frame_units=hp.Choice("frame_units", space.frame_units),
            gru_units=units,
            dropout=_number(hp, "dropout", space.dropout),
            recurrent_dropout=hp.Choice("recurrent_dropout", space.recurrent_dropout),
            dense_units=hp.Choice("dense_units", space.dense_units),
            learning_rate=_number(hp, "learning_rate", space.learning_rate),
            normalizer=self.normalizer if normalize else None,
        )

    def build(self, hp: kt.HyperParameters):
        return build_sequence_model(num_features=self.num_features, num_classes=self.num_classes,
                                    **self.declare(hp))

    def fit(self, hp: kt.HyperParameters, model, *args, **kwargs):
        length, batch_size = hp.get("seq_length"), hp.get("batch_size")
        return model.fit(
            self.train.sequences(length), self.train.labels, batch_size=batch_size,
            validation_data=(self.validation.sequences(length), self.validation.labels), **kwargs)
