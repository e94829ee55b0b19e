"""Step 5 of the job: the registered model logged to the parent run and registered (once per winning trial)."""

from __future__ import annotations

import numpy as np

from videoclf.config import Config
from videoclf.errors import writing_to
from videoclf.features.backbones import WeightsSource
from videoclf.dataset import SplitData
from videoclf.registered.registry import Registration
from videoclf.search.final import FinalModels
from videoclf.search.prepare import PreparedData
from videoclf.search.tuner import direction
from videoclf.tracking import SearchTracker


def training_clips(config: Config, train: SplitData, sample: int = 20) -> dict | None:
    """How long the training clips were (frames, and seconds at their frame rate), stored with the model
    so that prediction can warn about videos far longer than anything seen in training."""
    from videoclf.errors import VideoError
    from videoclf.features.decode import video_fps

    if train.n_frames is None or not len(train.n_frames):
        return None
    rates = []
    for key in train.keys[:: max(1, len(train.keys) // sample)][:sample]:
        try:
            rates.append(video_fps(config.data.root / key))
        except VideoError:
            continue
    fps = float(np.median(rates)) if rates else 25.0
    median, longest = float(np.median(train.n_frames)), float(np.max(train.n_frames))
    return {"median_frames": median, "max_frames": longest, "fps": fps, "median_seconds": median / fps,
            "max_seconds": longest / fps}


def publish(config: Config, tracker: SearchTracker, data: PreparedData, final: FinalModels,
            weights: WeightsSource) -> Registration:
    """Logs the registered model (the selection's members) to the parent run and registers it (once per
    selection of a search)."""
    from videoclf.registered.registry import (
        DATA_ROOT_TAG,
        RUN_ID_TAG,
        SEARCH_ID_TAG,
        SELECTION_RULE_TAG,
        TRIAL_ID_TAG,
        TRIAL_RUN_ID_TAG,
        existing_version,
        register,
    )
    from videoclf.registered.writer import log_members

    selection = final.selection
    single = selection.single
    trial_run = tracker.trial_run_id(single.key) if single is not None and single.kind == "trial" else None
    from videoclf.search.identity import training_content

    tags = {SEARCH_ID_TAG: tracker.search_id, TRIAL_ID_TAG: selection.key, RUN_ID_TAG: tracker.parent_run_id,
            TRIAL_RUN_ID_TAG: trial_run or "", SELECTION_RULE_TAG: selection.rule,
            TRAINING_CONTENT_TAG: training_content(config), DATA_ROOT_TAG: str(config.data.root.resolve())}
    known = existing_version(config.tracking.registered_model_name, config.tracking.champion_alias, tags,
                             data.selection_digest, TRAINING_CONTENT_TAG)
    if known:
        return known
    with tracker.logging_to_parent():
        info = log_members(config, weights, final.members, data.vocabulary.classes,
                           training_clips(config, data.train))
    return register(info.model_uri, name=config.tracking.registered_model_name, alias=config.tracking.champion_alias,
                    selection_score=selection.score, selection_digest=data.selection_digest,
                    higher_is_better=direction(config.tuning.objective) == "max",
                    test_accuracy=final.registered.accuracy, test_digest=data.test.digest, tags=tags,
                    description=version_description(config, data, final))


TRAINING_CONTENT_TAG = "training_content"  # on a version: the training files it was fitted on (identity.training_content)


def version_description(config: Config, data: PreparedData, final: FinalModels) -> str:
    """What the registry shows on the version's page: what it is, the data, how it was selected, how it tested."""
    low, high = final.registered.interval
    selection = final.selection
    if len(final.members) == 1:
        member = final.members[0]
        seeds = (f" (the mean of {len(final.models)} seeds' models)" if len(final.models) > 1 and
                 member.model is final.ensemble else "")
        what = f"{member.name}{seeds}, reading {member.stream}"
    else:
        what = "the weighted mean of " + ", ".join(f"{m.name} ({m.weight:.2f}, {m.stream})" for m in final.members)
    rule = f"Rule `{selection.rule}`: {selection.reason}."
    text = (f"{what[0].upper()}{what[1:]}, trained on the {len(data.train)} training videos of {config.data.root} "
            f"({len(data.vocabulary.classes)} classes: {', '.join(data.vocabulary.classes)}). Selected by "
            f"{data.protocol} ({config.tuning.objective} {selection.score:.3f}); test accuracy "
            f"{final.registered.accuracy:.3f} [95% CI {low:.3f}, {high:.3f}] on {len(data.test)} videos. {rule}")
    return text.strip()



def writing_artifacts(tracker: SearchTracker):
    """A full (or read-only) artifact store met in the block: one message naming it."""
    return writing_to(f"the MLflow artifact store ({tracker.artifact_store()})",
                      "make room there, or log to an experiment whose artifacts live elsewhere (create one with "
                      "`mlflow experiments create -n NAME --artifact-location DIR`, then --set "
                      "tracking.experiment_name=NAME)")


