"""Sequence classifiers over cached frame features: plain factories that know nothing of KerasTuner.

Every family reads ``(batch, time, features)`` where all-zero frames are
padding, and respects that padding everywhere (normalisation, centering,
deltas, convolutions, recurrences, pooling), so the same clip gives the same
prediction however much padding follows it. Families:

* ``pooled``: masked mean (and max / min / std) pooling → small MLP. The strong
  appearance model, and with motion inputs a strong motion-statistics model.
* ``tcn``: dilated 1-D convolutions over time, masked pooling.
* ``gru``: a GRU stack, optionally bidirectional.
* ``attention``: small masked attention pooling over time.

``inputs`` chooses what each time step carries: ``frames`` (the features),
``frames+deltas`` (features, their deltas ``x[t] - x[t-1]`` and step
channels), ``deltas`` (deltas and step channels) or ``steps`` (the six step
channels only: how much and how the picture changes, not what it shows).
Motion lives there; a step exists only between two real frames, so motion
inputs use the step mask (``t >= 1`` inside the clip). Input dropout never
drops step channels, so 1280 noisy delta features cannot hide six
informative numbers; the per-step projection sees both.
"""

from __future__ import annotations

from typing import Sequence, get_args

import keras
import numpy as np
from keras import ops

from videoclf.config import Family, Inputs
from videoclf.streams import APPEARANCE, stream_width, uses_appearance, uses_motion

STEPS_PER_EXECUTION = 16
FAMILIES = get_args(Family)  # the vocabularies are the config's (one place)
INPUTS = get_args(Inputs)
POOLING_STATS = ("mean", "max", "min", "std")
STEP_CHANNELS = 6  # see StepChannels


def _shift(values, steps: int = 1):
    """``values[:, t - steps]`` at time t (zeros before the start)."""
    pad = [[0, 0], [steps, 0]] + [[0, 0]] * (len(values.shape) - 2)
    return ops.pad(values[:, :-steps], pad)


def _weights(mask, dtype):
    return ops.expand_dims(ops.cast(mask, dtype), -1)


@keras.saving.register_keras_serializable(package="videoclf")
class PaddingMask(keras.layers.Layer):
    """``(B, T)`` float mask of real frames: a frame is padding when all its features are zero."""

    def call(self, inputs):
        return ops.cast(ops.any(ops.not_equal(inputs, 0.0), axis=-1), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package="videoclf")
class ZeroPadding(keras.layers.Layer):
    """Re-zeroes padded steps (after a layer that changed them, e.g. normalisation)."""

    def call(self, inputs):
        values, mask = inputs
        return values * _weights(mask, values.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="videoclf")
class BoolMask(keras.layers.Layer):
    """Float mask → boolean mask, the form Keras recurrent layers take."""

    def call(self, inputs):
        return ops.greater(inputs, 0.5)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="videoclf")
class TemporalCentering(keras.layers.Layer):
    """Subtracts each video's own mean frame feature (over real frames) and re-zeroes padding.

    What stays is how the picture changes, not what the scene looks like, which
    keeps a small training set from being memorised by its backgrounds.
    """

    def call(self, inputs):
        values, mask = inputs
        weights = _weights(mask, values.dtype)
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = ops.sum(values * weights, axis=1, keepdims=True) / count
        return (values - mean) * weights

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="videoclf")
class StepMask(keras.layers.Layer):
    """``mask[t] * mask[t-1]``: where a step between two real frames exists (never at t = 0)."""

    def call(self, inputs):
        return inputs * _shift(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="videoclf")
class FrameDeltas(keras.layers.Layer):
    """``x[t] - x[t-1]`` where a step between two real frames exists, zero elsewhere."""

    def call(self, inputs):
        values, step_mask = inputs
        return (values - _shift(values)) * _weights(step_mask, values.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="videoclf")
class StepChannels(keras.layers.Layer):
    """Six numbers a step from the raw features scaled to unit length per frame (relative change, any scene).

    The step size and its log, the drift from the clip's first frame and its
    log (a pan or zoom drifts away, a shake does not), straightness (two steps
    vs. the sum of their sizes) and rhythm (the change of log step size:
    stutter, dropped or repeated frames). Zero where no step exists.
    """

    def call(self, inputs):
        raw, step_mask = inputs
        unit = raw / ops.maximum(ops.norm(raw, axis=-1, keepdims=True), 1e-6)
        size = ops.norm(unit - _shift(unit), axis=-1)
        drift = ops.norm(unit - unit[:, :1], axis=-1)
        two_step = ops.norm(unit - _shift(unit, 2), axis=-1)
        has_two = step_mask * _shift(step_mask)
        log_size = ops.log(size + 1e-3)
        straightness = (ops.log(two_step + 1e-3) - ops.log(size + _shift(size) + 1e-3)) * has_two
        rhythm = (log_size - _shift(log_size)) * has_two
        channels = ops.stack([size, log_size, drift, ops.log(drift + 1e-3), straightness, rhythm], axis=-1)
        return channels * _weights(step_mask, channels.dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], STEP_CHANNELS)


@keras.saving.register_keras_serializable(package="videoclf")
class StreamSlice(keras.layers.Layer):
    """Channels ``[start, stop)`` of every step: one stream of the joined input (videoclf.streams)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, inputs):
        return inputs[..., self.start: self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="videoclf")
class MaskedPooling(keras.layers.Layer):
    """Concatenates the chosen statistics over real steps; a clip with none pools to zeros."""

    def __init__(self, stats: Sequence[str] = ("mean",), **kwargs):
        super().__init__(**kwargs)
        unknown = [s for s in stats if s not in POOLING_STATS]
        if unknown or not stats:
            raise ValueError(f"Expected pooling statistics from {POOLING_STATS}. Received: {list(stats)}")
        self.stats = tuple(stats)

    def call(self, inputs):
        values, mask = inputs
        weights = _weights(mask, values.dtype)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        any_step = ops.cast(ops.sum(weights, axis=1) > 0, values.dtype)
        mean = ops.sum(values * weights, axis=1) / count
        out = []
        for stat in self.stats:
            if stat == "mean":
                out.append(mean)
            elif stat == "std":
                variance = ops.sum(ops.square(values - ops.expand_dims(mean, 1)) * weights, axis=1) / count
                out.append(ops.sqrt(variance + 1e-6) * any_step)
            elif stat == "max":
                out.append(ops.max(values * weights - (1.0 - weights) * 1e9, axis=1) * any_step)
            else:
                out.append(ops.min(values * weights + (1.0 - weights) * 1e9, axis=1) * any_step)
        return ops.concatenate(out, axis=-1) if len(out) > 1 else out[0]

    def compute_output_shape(self, input_shape):
        batch, _, dim = input_shape[0]
        return (batch, dim * len(self.stats))

    def get_config(self):
        return {**super().get_config(), "stats": list(self.stats)}


@keras.saving.register_keras_serializable(package="videoclf")
class AttentionPooling(keras.layers.Layer):
    """Additive attention over time: a learned weight per real step (softmax over the mask only)."""

    def __init__(self, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="tanh")
        self.score = keras.layers.Dense(1, use_bias=False)

    def build(self, input_shape):
        self.hidden.build(input_shape[0])
        self.score.build((*input_shape[0][:-1], self.units))

    def call(self, inputs):
        values, mask = inputs
        logits = ops.squeeze(self.score(self.hidden(values)), -1)
        logits = logits + (1.0 - mask) * -1e9
        attention = ops.softmax(logits, axis=-1) * mask
        attention = attention / ops.maximum(ops.sum(attention, axis=-1, keepdims=True), 1e-9)
        return ops.sum(values * ops.expand_dims(attention, -1), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="videoclf")
class RelativeTime(keras.layers.Layer):
    """Appends each step's position in its clip (0 at the first real step, 1 at the last)."""

    def call(self, inputs):
        values, mask = inputs
        index = ops.cumsum(mask, axis=1) - 1.0
        last = ops.maximum(ops.max(index, axis=1, keepdims=True), 1.0)
        position = ops.expand_dims(ops.maximum(index, 0.0) / last * mask, -1)
        return ops.concatenate([values, position], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, time, dim = input_shape[0]
        return (batch, time, dim + 1)


def feature_statistics(sequences: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance over real (unpadded) frames, for the Normalization layer."""
    rows = np.concatenate([seq[:n] for seq, n in zip(sequences, stored)]).astype(np.float64)
    return rows.mean(axis=0), rows.var(axis=0) + 1e-12


def motion_statistics(motion: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-number mean and variance of the motion steps that exist, for the motion stream's Normalization."""
    rows = motion[valid.astype(bool)].astype(np.float64)
    if not len(rows):
        return np.zeros(motion.shape[-1]), np.ones(motion.shape[-1])
    return rows.mean(axis=0), rows.var(axis=0) + 1e-12


def seed_ensemble(models: list[keras.Model]) -> keras.Model:
    """One model whose probabilities are the mean of ``models``' (the same configuration trained with several
    seeds: a deep ensemble). One model is returned as it is."""
    if len(models) == 1:
        return models[0]
    joined = keras.Input(models[0].input_shape[1:], name="features")
    members = [keras.Model(m.inputs[0], m.outputs[0], name=f"seed_{i}")(joined) for i, m in enumerate(models)]
    return keras.Model(joined, keras.layers.Average(name="mean_probabilities")(members), name="seed_ensemble")


def _pooling_stats(pooling: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in pooling.split("+"))


def build_sequence_model(
    *,
    # data
    num_features: int,
    num_classes: int,
    normalizer: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_centering: bool = False,
    inputs: str = "frames",
    stream: str = APPEARANCE,
    motion_dim: int = 0,
    motion_normalizer: tuple[np.ndarray, np.ndarray] | None = None,
    # architecture
    family: str = "gru",
    input_dropout: float = 0.0,
    frame_units: int = 0,
    pooling: str = "mean",
    gru_units: Sequence[int] = (64, 32),
    bidirectional: bool = False,
    recurrent_dropout: float = 0.0,
    conv_filters: int = 64,
    conv_layers: int = 2,
    kernel_size: int = 3,
    attention_units: int = 32,
    dropout: float = 0.3,
    dense_units: int = 0,
    # optimisation
    learning_rate: float = 1e-3,
) -> keras.Model:
    """One classifier of ``family`` over ``(batch, time, features)``; time may vary (zero frames are padding).

    ``normalizer`` (mean, variance) adds a Normalization layer (raw CNN
    features are unnormalised); ``temporal_centering`` subtracts each clip's
    mean frame; ``inputs`` adds motion (see module docstring);
    ``frame_units`` adds a per-step Dense projection, ``input_dropout`` drops
    input features; ``pooling`` (``mean``, ``mean+std``, ``mean+max+min+std``…)
    is how ``pooled`` and ``tcn`` summarise time. ``stream`` (``appearance``, ``motion``,
    ``appearance+motion``) says which cached streams the input joins (layout in videoclf.streams):
    ``num_features`` is the appearance width, ``motion_dim`` the step descriptor's; the motion stream has its
    own normalisation (``motion_normalizer``) and, like the step channels, bypasses input dropout.
    """
    if family not in FAMILIES:
        raise ValueError(f"Expected family in {FAMILIES}. Received: family={family!r}")
    if inputs not in INPUTS:
        raise ValueError(f"Expected inputs in {INPUTS}. Received: inputs={inputs!r}")
    joined = keras.Input((None, stream_width(stream, num_features, motion_dim)), name="features")
    if uses_appearance(stream):
        features = joined if stream == APPEARANCE else StreamSlice(0, num_features, name=APPEARANCE)(joined)
        x, mask, extras = _appearance(features, normalizer, temporal_centering, inputs, input_dropout)
    else:
        x, mask, extras = None, PaddingMask(name="padding_mask")(joined), []
    if uses_motion(stream):
        start = num_features if uses_appearance(stream) else 0
        extras.append(_motion(joined, start, motion_dim, motion_normalizer, mask))
    if extras:
        x = keras.layers.Concatenate(name="with_steps")([x, *extras] if x is not None else extras) \
            if len(extras) + (x is not None) > 1 else extras[0]
    if frame_units:
        x = keras.layers.Dense(frame_units, activation="relu", name="frame_projection")(x)
        x = ZeroPadding(name="projection_padding")([x, mask])
    outputs = _family_head(x, mask, family=family, pooling=pooling, gru_units=gru_units, bidirectional=bidirectional,
                           recurrent_dropout=recurrent_dropout, conv_filters=conv_filters, conv_layers=conv_layers,
                           kernel_size=kernel_size, attention_units=attention_units, dropout=dropout,
                           dense_units=dense_units, num_classes=num_classes)
    model = keras.Model(joined, outputs, name=f"{family}_classifier")
    # several batches per call of the compiled step: less Python between steps, the same updates in the same order
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=STEPS_PER_EXECUTION)
    return model


def _motion(joined, start: int, motion_dim: int, normalizer, mask):
    """The motion stream's step descriptors, normalised on their own, zero where no step exists, plus the flag."""
    motion = StreamSlice(start, start + motion_dim, name="motion")(joined)
    flag = StreamSlice(start + motion_dim, start + motion_dim + 1, name="motion_flag")(joined)
    valid = PaddingMask(name="motion_mask")(flag)
    if normalizer is not None:
        mean, variance = normalizer
        motion = keras.layers.Normalization(mean=mean, variance=variance, name="motion_normalize")(motion)
    motion = ZeroPadding(name="motion_padding")([motion, valid])
    # a step that exists but is outside the time mask (e.g. t = 0 under a step mask) stays out of pooling anyway
    return ZeroPadding(name="motion_time_padding")([keras.layers.Concatenate(name="motion_steps")([motion, flag]),
                                                     mask])


def _appearance(features, normalizer, temporal_centering: bool, inputs: str, input_dropout: float):
    """The appearance stream as before motion existed: ``(per-step tensor or None, time mask, [step channels])``."""
    mask = PaddingMask(name="padding_mask")(features)
    x = features
    if normalizer is not None:
        mean, variance = normalizer
        x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
        x = ZeroPadding(name="normalize_padding")([x, mask])
    if temporal_centering:
        x = TemporalCentering(name="temporal_centering")([x, mask])
    steps = None
    if inputs != "frames":
        mask = StepMask(name="step_mask")(mask)
        steps = StepChannels(name="step_channels")([features, mask])
        deltas = FrameDeltas(name="deltas")([x, mask])
        x = {"frames+deltas": lambda: keras.layers.Concatenate(name="frames_and_deltas")(
                 [ZeroPadding(name="step_padding")([x, mask]), deltas]),
             "deltas": lambda: deltas, "steps": lambda: None}[inputs]()
    if x is not None and input_dropout:  # appearance / delta features only: step channels are never dropped
        x = keras.layers.Dropout(input_dropout, name="input_dropout")(x)
    return x, mask, [steps] if steps is not None else []


def _family_head(x, mask, *, family, pooling, gru_units, bidirectional, recurrent_dropout, conv_filters, conv_layers,
                 kernel_size, attention_units, dropout, dense_units, num_classes):
    """The family's temporal model over the per-step tensor, then the classifier."""
    if family == "pooled":
        x = MaskedPooling(_pooling_stats(pooling), name="pooling")([x, mask])
    elif family == "tcn":
        x = keras.layers.Dense(conv_filters, name="tcn_input")(x)
        for i in range(conv_layers):
            y = keras.layers.Conv1D(conv_filters, kernel_size, padding="same", dilation_rate=2**i,
                                    activation="relu", name=f"tcn_conv_{i}")(x)
            x = ZeroPadding(name=f"tcn_padding_{i}")([keras.layers.Add(name=f"tcn_residual_{i}")([x, y]), mask])
        x = MaskedPooling(_pooling_stats(pooling), name="pooling")([x, mask])
    elif family == "gru":
        for i, units in enumerate(gru_units):
            last = i == len(gru_units) - 1
            layer = keras.layers.GRU(units, return_sequences=not last, recurrent_dropout=recurrent_dropout,
                                     name=f"gru_{i}")
            if bidirectional:
                layer = keras.layers.Bidirectional(layer, name=f"bigru_{i}")
            x = layer(x, mask=BoolMask(name=f"gru_mask_{i}")(mask))
    else:
        x = keras.layers.Dense(attention_units, activation="relu", name="attention_input")(x)
        x = RelativeTime(name="relative_time")([x, mask])
        attended = AttentionPooling(attention_units, name="attention_pooling")([x, mask])
        x = keras.layers.Concatenate(name="attention_summary")(
            [attended, MaskedPooling(("mean",), name="pooling")([x, mask])])

    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
