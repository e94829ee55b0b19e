"""Each artifact of a registered model checked when it loads, against the size and digest recorded when it was written.

A half-copied artifact store leaves truncated files. A damaged LiteRT form
(the fast CPU path) is dropped with one warning naming the file: the model
runs on the Keras form it carries beside it. Where nothing usable is left (a
Keras model, the extractor's weights, the int8 extractor, a linear head), one
error names the artifact and the fix. Models registered before digests were
recorded are checked when their LiteRT forms load instead (see
``videoclf.registered.pyfunc``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from videoclf.errors import VideoclfError
from videoclf.registered.format import (
    EXTRACTOR_WEIGHTS_KEY,
    LITERT_EXTRACTOR_KEY,
    LITERT_SEQUENCE_MODEL_KEY,
    LITERT_SUFFIX,
    MEMBER_PREFIX,
    SEQUENCE_MODEL_KEY,
    SETTINGS_KEY,
)

LOG = logging.getLogger("videoclf.model")
# each LiteRT form and the Keras form that does the same work
LITERT_FALLBACK = {LITERT_EXTRACTOR_KEY: EXTRACTOR_WEIGHTS_KEY, LITERT_SEQUENCE_MODEL_KEY: SEQUENCE_MODEL_KEY}


class DamagedModel(VideoclfError):
    """A registered model's artifact is missing or damaged and nothing can stand in for it."""


def file_digest(path: str | Path) -> dict:
    """Size and BLAKE2b digest of one artifact file (read in 1 MiB blocks)."""
    digest, size = hashlib.blake2b(digest_size=16), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"size": size, "blake2b": digest.hexdigest()}


def recorded_digests(artifacts: dict[str, str], skip: tuple[str, ...] = (SETTINGS_KEY,)) -> dict[str, dict]:
    """What the writer records in ``settings.json``: each artifact's file name, size and digest."""
    return {key: {"file": Path(path).name, **file_digest(path)} for key, path in sorted(artifacts.items())
            if key not in skip and Path(path).is_file()}


def problem(path: str | None, recorded: dict) -> str | None:
    """Why an artifact file cannot be trusted (missing, another size, other contents), or None."""
    if path is None or not Path(path).is_file():
        return "missing"
    size = Path(path).stat().st_size
    if size != recorded["size"]:
        return f"{size} bytes where {recorded['size']} were written (truncated or replaced)"
    if file_digest(path)["blake2b"] != recorded["blake2b"]:
        return "its bytes differ from those written"
    return None


def keras_form(key: str) -> str | None:
    """The artifact that does a LiteRT form's work on Keras (None: ``key`` is not a LiteRT form with one)."""
    if key in LITERT_FALLBACK:
        return LITERT_FALLBACK[key]
    return key[: -len(LITERT_SUFFIX)] if key.startswith(MEMBER_PREFIX) and key.endswith(LITERT_SUFFIX) else None


def check_model_folder(folder: str | Path):
    """Checks a downloaded model's files before anything loads it (``serve`` does, once, before its workers start:
    a damaged model is one error, not workers restarting for ever); returns its ``ModelSettings``."""
    import yaml

    from videoclf.registered.format import SETTINGS, ModelSettings

    folder = Path(folder)
    try:
        flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
        artifacts = {key: str(folder / spec["path"]) for key, spec in flavor.get("artifacts", {}).items()}
        settings = ModelSettings.from_json(Path(artifacts[SETTINGS_KEY]).read_text())
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise DamagedModel(f"{folder}: not a readable videoclf model ({type(exc).__name__}: {exc}); the files "
                           f"MLmodel and artifacts/{SETTINGS} must be there and intact. Copy the model's artifacts "
                           "again, or register it again.") from None
    checked_artifacts(artifacts, settings.artifact_digests or {}, str(folder))
    return settings


def checked_artifacts(artifacts: dict[str, str], recorded: dict[str, dict], where: str) -> dict[str, str]:
    """``artifacts`` without its damaged LiteRT forms (each dropped with one warning); raises :class:`DamagedModel`
    naming the first damaged artifact nothing stands in for. ``where`` names the model in messages."""
    out = dict(artifacts)
    damaged = {key: reason for key, digest in recorded.items() if (reason := problem(artifacts.get(key), digest))}
    for key, reason in damaged.items():
        stand_in = keras_form(key)
        if stand_in is not None and stand_in not in damaged and stand_in in artifacts:
            out.pop(key, None)
            LOG.warning("%s: %s is damaged (%s); running its Keras form instead (slower on a CPU). Register the "
                        "model again, or copy its artifacts again, to get it back.", where,
                        recorded[key]["file"], reason)
            continue
        raise DamagedModel(f"{where}: artifact {recorded[key]['file']} ({key}) is damaged: {reason}. Nothing in the "
                           "model can stand in for it: copy the model's artifacts again from where they were "
                           "logged, or register the model again (videoclf tune with the same config).")
    return out
