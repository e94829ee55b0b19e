"""Step 1 of the job: the cached splits (extracting what is missing), the selection folds, the hypermodel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoclf.config import Config
from videoclf.dataset import (
    NO_GROUPS,
    Fold,
    RowsMissing,
    SplitData,
    Vocabulary,
    load_split,
    make_folds,
    selection_digest,
)
from videoclf.console import plural
from videoclf.errors import DataError
from videoclf.features.backbones import FEATURE_DIMS, WeightsSource
from videoclf.features.cache import DamagedRows
from videoclf.features.extract import extract_split, extract_videos
from videoclf.model import feature_statistics, motion_statistics
from videoclf.search.hypermodel import SequenceHyperModel


@dataclass(frozen=True)
class PreparedData:
    """Everything the search reads: cached splits, the selection folds and their digest."""

    train: SplitData
    test: SplitData
    vocabulary: Vocabulary
    folds: list[Fold]
    selection_digest: str
    normalizer: tuple[np.ndarray, np.ndarray]
    motion_normalizer: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def protocol(self) -> str:
        return f"{len(self.folds)}-fold CV" if len(self.folds) > 1 else "holdout validation"


def prepare(config: Config, weights: WeightsSource, progress: bool) -> PreparedData:
    """Reads both splits from the cache (extracting what is missing) and cuts the selection folds."""
    for split in ("train", "test"):  # rows are verified once, while loaded below
        extract_split(config, split, weights, progress, verify=False)
    train, vocabulary = _load(config, "train", weights, progress)
    present = {vocabulary.classes[i] for i in set(train.labels.tolist())}
    missing = [c for c in vocabulary.classes if c not in present]
    if len(present) < 2 or missing:
        raise DataError(f"{config.data.csv_path('train')}: expected at least two classes, each with usable "
                        f"training videos. Received: {sorted(present)}; without videos: {missing}. Add videos "
                        f"or set data.classes.")
    test, _ = _load(config, "test", weights, progress, vocabulary)
    training = config.training
    n_folds = training.folds_for(len(train))
    folds = make_folds(train, n_folds, training.validation_fraction, training.seed)
    data = PreparedData(train, test, vocabulary, folds,
                        selection_digest(train, n_folds, training.validation_fraction, training.seed),
                        feature_statistics(train.features, train.cached_frames),
                        motion_statistics(train.motion, train.motion_valid) if train.motion is not None else None)
    validation = sum(len(f.validation) for f in folds)
    grouped = f"grouped by {train.grouping}" if train.grouping != NO_GROUPS else "not grouped"
    print(f"data: {len(train)} train videos ({data.protocol}: {validation} validation predictions a trial, "
          f"{grouped}) / {len(test)} test videos, {len(vocabulary.classes)} classes", flush=True)
    if train.grouping == NO_GROUPS:
        print(f"WARNING: {GROUPING_WARNING}", flush=True)
    return data


GROUPING_WARNING = ("no group information (no 'group' column in the CSV, no UCF101 _gNN_ in the names): every video "
                    "is its own group, so clips cut from one source video can sit on both sides of a validation "
                    "split and make validation scores optimistic. Add a 'group' column to train.csv naming each "
                    "video's source.")


def hypermodel_for(config: Config, data: PreparedData) -> SequenceHyperModel:
    """The search space over the prepared data's streams, normalised by the training split's statistics."""
    return SequenceHyperModel(config.search, FEATURE_DIMS[config.extractor.name], len(data.vocabulary.classes),
                              data.normalizer, data.train.motion.shape[-1] if data.train.motion is not None else 0,
                              data.motion_normalizer)


def _load(config: Config, split: str, weights: WeightsSource, progress: bool, vocabulary: Vocabulary | None = None):
    """``load_split``, which reads and verifies every row once; damaged rows are extracted again, then read, and so
    are rows gone since this job extracted (another split's repair merged a cache file and left a damaged row
    out)."""
    from videoclf.data.videos import split_videos

    for _ in range(3):  # a second stream's damage shows once the first stream's rows are sound
        try:
            return load_split(config, split, weights, vocabulary)
        except DamagedRows as damage:
            print(f"{damage.summary()}: extracting again", flush=True)
            videos = [v for v in split_videos(config, split)[0] if v.key in damage.damaged]
            extract_videos(config, videos, weights, progress, verify=False, again=frozenset(damage.damaged))
        except RowsMissing as gone:
            print(f"{gone.path}: {plural(len(gone.keys), 'video')} of the {split} split no longer cached (e.g. "
                  f"{gone.keys[0]}): extracting again", flush=True)
            videos = [v for v in split_videos(config, split)[0] if v.key in set(gone.keys)]
            extract_videos(config, videos, weights, progress, verify=False)
    return load_split(config, split, weights, vocabulary)

