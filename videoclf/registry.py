"""Logging the winner as an MLflow model, registering it, and moving the champion alias.

The alias moves only when the new version beats the current champion on the
same test split (identified by a digest of its video names and labels);
otherwise the version is registered without it, and the reason is returned.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from videoclf.versions import installed_versions


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    champion: bool
    reason: str
    model_uri: str


def sequence_signature(num_features: int, num_classes: int) -> ModelSignature:
    """Batch and time are variable (-1): any sequence length works at inference."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, num_features), "features")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes), "probabilities")]))


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged model (inference needs no tuner or tracking server)."""
    versions = installed_versions(("tensorflow", "keras", "mlflow", "opencv-python-headless", "numpy", "pandas",
                                   "h5py", "pydantic", "pyyaml", "filelock", "tqdm"))
    return [f"{name}=={value}" for name, value in versions.items()]


def log_video_model(config, sequence_model, classes, seq_length: int):
    """Logs the video-in pyfunc (see videoclf.inference) to the active run; returns its ModelInfo.

    The extractor's weights are bundled, saved from the exact extractor that
    filled the cache, so the model predicts offline and needs no Keras download.
    """
    import mlflow
    import videoclf
    from videoclf.features.extractors import build_keras_extractor, resolve_weights
    from videoclf.inference import SETTINGS, VideoClassifier

    weights = resolve_weights(config.extractor)
    extractor = build_keras_extractor(config.extractor, config.sampling.image_size, weights)
    settings = {"classes": list(classes), "seq_length": seq_length,
                "sampling": config.sampling.model_dump(mode="json"),
                "extractor": config.extractor.model_dump(mode="json"), "cache_dtype": config.cache.dtype,
                "extractor_weights": {"kind": weights.kind, "digest": weights.digest}}
    with tempfile.TemporaryDirectory(prefix="videoclf-model-") as tmp:
        tmp = Path(tmp)
        sequence_model.save(tmp / "sequence_model.keras")
        extractor.save_weights(tmp / "extractor.weights.h5")
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=2))
        return mlflow.pyfunc.log_model(
            name="model", python_model=VideoClassifier(),
            artifacts={"sequence_model": str(tmp / "sequence_model.keras"),
                       "extractor_weights": str(tmp / "extractor.weights.h5"), "settings": str(tmp / SETTINGS)},
            # No input schema: a DataFrame with video_path, a list of paths or one path all work.
            code_paths=[str(Path(videoclf.__file__).parent)], pip_requirements=model_requirements(),
            metadata={"classes": list(classes), "seq_length": seq_length})


def _current_champion(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register(model_uri: str, *, name: str, alias: str, test_accuracy: float, test_digest: str,
             tags: dict[str, str]) -> Registration:
    """Registers ``model_uri`` under ``name``; gives it ``alias`` only if it beats the holder."""
    import mlflow

    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={
        **tags, "test_accuracy": f"{test_accuracy:.6f}", "test_split_digest": test_digest}).version
    holder = _current_champion(client, name, alias)
    if holder is None:
        champion, reason = True, f"first model with alias '{alias}'"
    elif holder.tags.get("test_split_digest") != test_digest:
        champion = False
        reason = (f"the current {alias} (version {holder.version}) was tested on another test split; "
                  f"compare them yourself and move the alias with MlflowClient().set_registered_model_alias")
    else:
        held = float(holder.tags.get("test_accuracy", "-1"))
        champion = test_accuracy > held
        reason = (f"test accuracy {test_accuracy:.4f} {'beats' if champion else 'does not beat'} "
                  f"{alias} version {holder.version} ({held:.4f}) on the same test split")
    if champion:
        client.set_registered_model_alias(name, alias, version)
    return Registration(name, str(version), champion, reason, model_uri)
