"""Which search this is, and whether it already finished: the search id, the finish fingerprint, the role.

The search id (what the tuner and MLflow resume by) follows the config's search-relevant
settings; the finish fingerprint adds what the job's last steps depend on (videos, budget,
refits, baselines, registry target), so a finished job re-run does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from videoclf.config import Config
from videoclf.features.backbones import WeightsSource
from videoclf.registered.registry import Registration
from videoclf.streams import APPEARANCE


@dataclass(frozen=True)
class FinishedEarlier:
    """A re-run of a search that had finished with the same data and settings: nothing was done again."""

    search_id: str
    parent_run_id: str
    registration: Registration | None


def finish_fingerprint(config: Config, search_id: str, weights: WeightsSource, register_model: bool) -> str:
    """What a finished job's results depend on beyond its search id: the listed videos (names, labels, sizes,
    modification times), the weights, the trial budget, the final refits, the baselines and where the winner goes.
    Equal fingerprints: re-running would redo the same work for the same answer."""
    from videoclf.data.videos import split_videos

    videos = {split: [(v.key, tag, v.size, v.mtime_ns) for v, tag in zip(*split_videos(config, split))]
              for split in ("train", "test")}
    tuning = config.tuning
    identity = {"search_id": search_id, "videos": videos, "weights": weights.digest, "max_trials": tuning.max_trials,
                "final_seeds": tuning.final_seeds, "baselines": list(tuning.baselines), "select": tuning.select,
                "register": [config.tracking.registered_model_name, config.tracking.champion_alias] if register_model
                else None}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def finished_earlier(config: Config, search_id: str, fingerprint: str) -> FinishedEarlier | None:
    """The search's latest parent run, when it finished with this ``fingerprint`` (then says so on the console)."""
    from videoclf.console import finished_summary
    from videoclf.registered.registry import registration_of
    from videoclf.tracking import finished_parent_run

    run = finished_parent_run(config.tracking.experiment_name, search_id, fingerprint)
    if run is None:
        return None
    pointer = run.data.tags.get("registered_model_version")
    registration = registration_of(pointer, config.tracking.champion_alias)
    if pointer and registration is None:  # the registry's state, not the search's: its version was deleted
        print(f"search {search_id} finished earlier, but the version it registered ({pointer}) is gone from the "
              "registry: refitting and registering it again", flush=True)
        return None
    print(finished_summary(run, registration, config.tracking.champion_alias), flush=True)
    return FinishedEarlier(search_id, run.info.run_id, registration)


def training_content(config: Config) -> str:
    """Identifies the training videos as files (names, labels, sizes, modification times): a version registered
    from other bytes is another model, even under the same search, trial and folds."""
    from videoclf.data.videos import split_videos

    rows = [(v.key, tag, v.size, v.mtime_ns) for v, tag in zip(*split_videos(config, "train"))]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def search_id_for(config: Config, name: str) -> str:
    """Same config → same id → the search resumes; ``max_trials`` may grow without starting over.

    What changes the features is ``features.cache.cache_key``'s rule; the id keeps its own spelling of it (the
    config sections as they are) because deriving it anew would change every existing id and orphan the tuner
    state and runs of every search already made."""
    if config.tuning.project_name:
        return config.tuning.project_name
    identity = config.to_dict()
    identity["tuning"] = {k: v for k, v in identity["tuning"].items()
                          if k not in ("max_trials", "overwrite", "final_seeds", "baselines", "select",
                                       "lease_seconds", "trial_attempts", "trial_timeout",
                                       "trial_progress_timeout")}
    identity.pop("tracking")
    identity.pop("serving")  # neither changes what the search finds
    identity["extractor"].pop("runtime")  # the same features on either runtime
    if identity["extractor"]["precision"] == "float32":
        identity["extractor"].pop("precision")  # float32 searches keep the ids they had before precision existed
    if identity["sampling"]["views"] == 1:
        identity["sampling"].pop("views")  # searches of one view keep the ids they had before views existed
    if not config.motion.enabled:  # appearance-only searches keep the ids they had before the motion stream
        identity.pop("motion")
    if identity["search"]["streams"] == [APPEARANCE]:
        identity["search"].pop("streams")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


def is_worker() -> bool:
    """True in a KerasTuner worker process (``KERASTUNER_TUNER_ID=tunerN`` beside a chief oracle's address): it runs
    trials only; the chief tests, logs and registers the winner."""
    return bool(os.environ.get("KERASTUNER_ORACLE_IP")) and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
