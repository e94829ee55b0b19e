"""The GRU sequence classifier: a plain factory that knows nothing of KerasTuner."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="videoclf")
class TemporalCentering(keras.layers.Layer):
    """Subtracts each video's own mean frame feature (over real frames) and re-zeroes padding.

    What stays is how the picture changes, not what the scene looks like, which
    keeps a small training set from being memorised by its backgrounds.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return inputs - keras.ops.mean(inputs, axis=1, keepdims=True)
        weights = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
        count = keras.ops.maximum(keras.ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = keras.ops.sum(inputs * weights, axis=1, keepdims=True) / count
        return (inputs - mean) * weights


def feature_statistics(sequences: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance over real (unpadded) frames, for the Normalization layer."""
    rows = np.concatenate([seq[:n] for seq, n in zip(sequences, stored)]).astype(np.float64)
    return rows.mean(axis=0), rows.var(axis=0) + 1e-12


def build_sequence_model(
    *,
    # data
    num_features: int,
    num_classes: int,
    normalizer: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_centering: bool = False,
    # architecture
    input_dropout: float = 0.0,
    frame_units: int = 0,
    gru_units: Sequence[int] = (64, 32),
    dropout: float = 0.3,
    recurrent_dropout: float = 0.0,
    dense_units: int = 0,
    # optimisation
    learning_rate: float = 1e-3,
) -> keras.Model:
    """Masked GRU stack over ``(batch, time, features)``; time may vary (zero frames are padding).

    ``normalizer`` (mean, variance) adds a Normalization layer: raw CNN
    features are unnormalised and, with random-init weights, tiny.
    ``temporal_centering`` subtracts each video's mean frame (see
    :class:`TemporalCentering`); ``frame_units`` adds a per-frame Dense
    projection before the GRUs, ``input_dropout`` drops input features.
    """
    inputs = keras.Input((None, num_features), name="features")
    x = keras.layers.Masking(mask_value=0.0, name="padding_mask")(inputs)
    if normalizer is not None:
        mean, variance = normalizer
        x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
    if temporal_centering:
        x = TemporalCentering(name="temporal_centering")(x)
    if input_dropout:
        x = keras.layers.Dropout(input_dropout, name="input_dropout")(x)
    if frame_units:
        x = keras.layers.Dense(frame_units, activation="relu", name="frame_projection")(x)
    for i, units in enumerate(gru_units):
        last = i == len(gru_units) - 1
        x = keras.layers.GRU(units, return_sequences=not last, recurrent_dropout=recurrent_dropout,
                             name=f"gru_{i}")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="gru_classifier")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
