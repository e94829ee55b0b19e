"""KerasTuner HyperModel: ``build(hp)`` only reads hyperparameters; ``fit`` slices the cache.

The model family is a hyperparameter; each family's own hyperparameters are
declared in a conditional scope, so a trial records only what its model
uses. The sequence length is a hyperparameter too, but features are never
re-extracted: ``fit`` cuts each trial's length from the cached sequences.
"""

from __future__ import annotations

import keras_tuner as kt

from videoclf.config import FloatRange, SearchSpace
from videoclf.dataset import SplitData
from videoclf.fitting import fit_arrays
from videoclf.model import build_sequence_model
from videoclf.streams import APPEARANCE, uses_appearance


def _number(hp: kt.HyperParameters, name: str, spec: FloatRange | list[float]) -> float:
    if isinstance(spec, FloatRange):
        return hp.Float(name, spec.min, spec.max, step=spec.step, sampling="log" if spec.log else "linear")
    return hp.Choice(name, list(spec))


class SequenceHyperModel(kt.HyperModel):
    """Search space from the experiment YAML around :func:`build_sequence_model`."""

    def __init__(self, space: SearchSpace, num_features: int, num_classes: int, normalizer, motion_dim: int = 0,
                 motion_normalizer=None):
        super().__init__(name="sequence_classifier")
        self.space = space
        self.num_features = num_features
        self.num_classes = num_classes
        self.normalizer = normalizer
        self.motion_dim = motion_dim
        self.motion_normalizer = motion_normalizer

    def _gru(self, hp: kt.HyperParameters) -> dict:
        space = self.space
        layers = hp.Choice("num_gru_layers", space.num_gru_layers)
        units = []
        for i in range(max(space.num_gru_layers)):
            with hp.conditional_scope("num_gru_layers", [n for n in space.num_gru_layers if n > i]):
                if layers > i:
                    units.append(hp.Choice(f"gru_units_{i}", space.gru_units[i]))
        return dict(gru_units=units, bidirectional=hp.Choice("bidirectional", space.bidirectional),
                    recurrent_dropout=hp.Choice("recurrent_dropout", space.recurrent_dropout))

    def _family_arguments(self, hp: kt.HyperParameters, family: str) -> dict:
        """The drawn family's own hyperparameters, each declared under a condition on ``family``.

        Scopes are entered even when inactive, so KerasTuner sees the whole space up front.
        """
        space = self.space

        def scoped(families: tuple[str, ...], declare) -> dict:
            active = [f for f in space.family if f in families]
            if not active:
                return {}
            with hp.conditional_scope("family", active):
                return declare() if family in active else {}

        return {
            **scoped(("pooled", "tcn"), lambda: {"pooling": hp.Choice("pooling", space.pooling)}),
            **scoped(("tcn",), lambda: {"conv_filters": hp.Choice("conv_filters", space.conv_filters),
                                        "conv_layers": hp.Choice("conv_layers", space.conv_layers),
                                        "kernel_size": hp.Choice("kernel_size", space.kernel_size)}),
            **scoped(("gru",), lambda: self._gru(hp)),
            **scoped(("attention",), lambda: {"attention_units": hp.Choice("attention_units",
                                                                           space.attention_units)}),
        }

    def _appearance_arguments(self, hp: kt.HyperParameters, stream: str) -> dict:
        """How the appearance stream is shaped, declared only for the streams that read it."""
        space = self.space
        reading = [s for s in space.streams if uses_appearance(s)]
        if not reading:
            return {}
        with hp.conditional_scope("streams", reading):
            if stream not in reading:
                return {}
            return dict(inputs=hp.Choice("inputs", space.inputs),
                        temporal_centering=hp.Choice("temporal_centering", space.temporal_centering),
                        input_dropout=_number(hp, "input_dropout", space.input_dropout))

    def declare(self, hp: kt.HyperParameters) -> dict:
        """Reads every hyperparameter once; returns the factory's keyword arguments."""
        space = self.space
        family = hp.Choice("family", space.family)
        arguments = self._family_arguments(hp, family)
        hp.Choice("seq_length", space.seq_length)
        hp.Choice("batch_size", space.batch_size)
        stream = hp.Choice("streams", space.streams)
        normalize = hp.Choice("normalize", space.normalize)
        return dict(
            family=family,
            stream=stream,
            **self._appearance_arguments(hp, stream),
            frame_units=hp.Choice("frame_units", space.frame_units),
            dropout=_number(hp, "dropout", space.dropout),
            dense_units=hp.Choice("dense_units", space.dense_units),
            learning_rate=_number(hp, "learning_rate", space.learning_rate),
            normalizer=self.normalizer if normalize else None,
            motion_dim=self.motion_dim,
            motion_normalizer=self.motion_normalizer if normalize else None,
            **arguments,
        )

    def build(self, hp: kt.HyperParameters):
        return build_sequence_model(num_features=self.num_features, num_classes=self.num_classes,
                                    **self.declare(hp))

    def fit(self, hp: kt.HyperParameters, model, train: SplitData, validation: SplitData | None = None, **kwargs):
        """Trains on ``train`` (every view of it) at the trial's sequence length (validating on ``validation``'s
        plain view when given)."""
        length, batch_size, stream = hp.get("seq_length"), hp.get("batch_size"), trial_stream(hp)
        validation_data = None if validation is None else (self.validation_inputs(hp, validation), validation.labels)
        # the validation split in one batch: one step an epoch instead of several (same accuracy; the loss equal
        # to float rounding)
        return fit_arrays(model, *train.training_inputs(length, stream), batch_size=batch_size,
                          validation_data=validation_data,
                          validation_batch_size=len(validation) if validation is not None else None, **kwargs)


    def validation_inputs(self, hp: kt.HyperParameters, data: SplitData):
        """What ``fit`` validates on: ``data``'s inputs at the trial's length and stream."""
        return data.inputs(hp.get("seq_length"), trial_stream(hp))


def trial_stream(hp: kt.HyperParameters) -> str:
    """The stream a trial reads (trials of searches from before streams existed read appearance)."""
    return hp.values.get("streams", APPEARANCE)
