"""Cached features → labelled arrays for training, validation and test.

Features come from the HDF5 cache, read only (the job extracts first, see
``features.extract.extract_split``); videos extraction skipped as undecodable
are left out; labels go through a fixed vocabulary; the validation split is stratified by
class and grouped by UCF101 group id so clips of one actor never sit on both
sides. With ``sampling.views``, a split also holds each further cached view of
its videos (same rows): training reads every view, validation the plain one,
and test predictions average over all (:meth:`SplitData.view_mean`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from videoclf.config import Config
from videoclf.console import plural
from videoclf.data.table import group_id
from videoclf.data.videos import allowance, split_rows, too_many_bad
from videoclf.errors import CacheError, DataError
from videoclf.features.cache import open_cache, open_motion_cache
from videoclf.features.backbones import WeightsSource
from videoclf.features.sample import derive_sequences
from videoclf.features.views import views
from videoclf.streams import APPEARANCE, stream_sequences


class RowsMissing(CacheError):
    """Videos of a split with no current row in a cache (never extracted, changed since, or left out of a merge
    as damaged): ``extract`` fills them; ``tune`` does so itself."""

    def __init__(self, path, split: str, keys: list[str]):
        self.path, self.split, self.keys = path, split, list(keys)
        super().__init__(f"{plural(len(keys), 'video')} of the {split} split (e.g. {keys[0]}) not in the feature "
                         f"cache {path}, or changed since. Run videoclf extract with the same config first.")


@dataclass(frozen=True)
class Vocabulary:
    """Class names in index order (like the seed's StringLookup); stored with the model."""

    classes: tuple[str, ...]

    def encode(self, tags, source: str) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({t for t in tags if t not in index})
        if unknown:
            raise DataError(f"{source}: label(s) {unknown} are not among the training classes "
                            f"{list(self.classes)}. Fix the CSV or set data.classes in the config.")
        return np.array([index[t] for t in tags], np.int64)


@dataclass
class SplitData:
    """One split's cached sequences at the cache's max length, plus labels and groups."""

    keys: list[str]
    labels: np.ndarray
    features: np.ndarray  # (N, L, D), cache dtype
    cached_frames: np.ndarray  # (N,) sampled frames stored in the cache per video (the rest is padding)
    groups: list[str]
    digest: str
    n_frames: np.ndarray | None = None  # (N,) frames that really decoded (the clip's length)
    motion: np.ndarray | None = None  # (N, L, M) motion step descriptors, when the motion stream is on
    motion_valid: np.ndarray | None = None  # (N, L) which of those steps exist
    grouping: str = "UCF101 gNN in the video names"  # how ``groups`` were found (see dataset._groups)
    views: tuple["SplitData", ...] = ()  # views 1 … of the same videos, row for row (videoclf.features.views)
    _by_length: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _inputs: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def sequences(self, length: int) -> np.ndarray:
        """``(N, length, D)`` float32 sequences sliced from the cache (zero-padded, so masked): the appearance
        stream's input, cut once per length."""
        return self.inputs(length, APPEARANCE)

    def arrays(self, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features (N, length, D) float32, mask (N, length) bool, labels (N,))``."""
        if length not in self._by_length:
            self._by_length[length] = derive_sequences(self.features, self.cached_frames, length)
        features, mask = self._by_length[length]
        return features.astype(np.float32), mask, self.labels

    def inputs(self, length: int, stream: str = APPEARANCE) -> np.ndarray:
        """``(N, length, width)`` float32: the model's input for ``stream`` (videoclf.streams), kept per length."""
        if (length, stream) not in self._inputs:
            self._inputs[(length, stream)] = stream_sequences(stream, length, self.cached_frames, self.features,
                                                              self.motion, self.motion_valid)
        return self._inputs[(length, stream)]

    def training_inputs(self, length: int, stream: str = APPEARANCE) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, labels)`` to train on: every view's inputs, one after the other (one view: :meth:`inputs`)."""
        if not self.views:
            return self.inputs(length, stream), self.labels
        if (length, f"every view: {stream}") not in self._inputs:  # cut once per length, as inputs() are
            self._inputs[(length, f"every view: {stream}")] = np.concatenate(
                [v.inputs(length, stream) for v in self.every_view()])
        return self._inputs[(length, f"every view: {stream}")], np.tile(self.labels, len(self.every_view()))

    def every_view(self) -> list["SplitData"]:
        """This split's plain view, then its further views."""
        return [self, *self.views]

    def view_mean(self, predict) -> np.ndarray:
        """``predict(view)`` averaged over every view: a model's answer for the split's videos."""
        if not self.views:
            return np.asarray(predict(self))
        return np.mean([np.asarray(predict(v), np.float64) for v in self.every_view()], axis=0).astype(np.float32)

    def subset(self, rows: np.ndarray) -> "SplitData":
        rows = np.asarray(rows)

        def pick(values):
            return None if values is None else values[rows]

        return SplitData([self.keys[i] for i in rows], self.labels[rows], self.features[rows],
                         self.cached_frames[rows], [self.groups[i] for i in rows], f"{self.digest}:{len(rows)}",
                         pick(self.n_frames), pick(self.motion), pick(self.motion_valid), self.grouping,
                         tuple(v.subset(rows) for v in self.views))


def vocabulary_for(config: Config, train_tags: list[str]) -> Vocabulary:
    if config.data.classes:
        return Vocabulary(tuple(config.data.classes))
    return Vocabulary(tuple(sorted(set(train_tags))))


def check_csvs(config: Config) -> Vocabulary:
    """The classes, every test label checked against them, and every listed file that is not there, from the CSVs
    alone: a wrong label or missing files are refused before a store is opened or a video extracted (``load_split``
    applies the same label rule to the cached rows; extraction the same file rule to undecodable videos)."""
    rows = {split: split_rows(config, split) for split in ("train", "test")}
    refuse_missing_files(config, rows)
    tags = {split: found[1] for split, found in rows.items()}
    if config.data.classes:
        wanted = set(config.data.classes)
        tags = {split: [t for t in values if t in wanted] for split, values in tags.items()}
    vocabulary = vocabulary_for(config, tags["train"])
    listed = sorted(set(tags["train"]))
    if len(listed) < 2:
        raise DataError(f"{config.data.csv_path('train')}: expected at least two classes, each with usable training "
                        f"videos. Received: {listed}. Add videos or set data.classes.")
    vocabulary.encode(tags["test"], str(config.data.csv_path("test")))
    return vocabulary


def refuse_missing_files(config: Config, rows: dict | None = None) -> None:
    """Files a CSV lists that are not there stop the job, all named, unless ``cache.max_bad_fraction`` lets that
    many be left out (they are then named on the console as they are left out). ``rows``: each split's
    ``split_rows``, read here when not given."""
    rows = rows or {split: split_rows(config, split) for split in ("train", "test")}
    for split, (videos, tags, _) in rows.items():
        wanted = [v for v, t in zip(videos, tags) if not config.data.classes or t in config.data.classes]
        gone = [v for v in wanted if v.size < 0]
        if gone and too_many_bad(len(gone), len(wanted), config.cache.max_bad_fraction):
            raise DataError(
                f"{config.data.csv_path(split)} lists {plural(len(gone), 'video')} that cannot be found: "
                + ", ".join(str(v.path) for v in gone)
                + ". Fix the names in the CSV or put the files there" + allowance(len(gone), len(wanted)))


def load_split(config: Config, split: str, weights: WeightsSource, vocabulary: Vocabulary | None = None
               ) -> tuple[SplitData, Vocabulary]:
    """Reads a split from the cache (no extraction, no lock); videos listed as undecodable are left out."""
    videos, tags, named_groups = split_rows(config, split)
    if config.data.classes:
        keep = [i for i, t in enumerate(tags) if t in set(config.data.classes)]
        videos, tags = [videos[i] for i in keep], [tags[i] for i in keep]
        named_groups = [named_groups[i] for i in keep] if named_groups else None
    vocabulary = vocabulary or vocabulary_for(config, tags)
    labels = vocabulary.encode(tags, str(config.data.csv_path(split)))
    every = views(config.sampling.views)
    caches = [(open_cache(config, weights, view=v), open_motion_cache(config, view=v)) for v in every]
    bad = {}
    for each in (c for pair in caches for c in pair if c is not None):
        bad |= each.bad_videos()
    usable = [i for i, v in enumerate(videos) if v.key not in bad]
    for each in (c for pair in caches for c in pair if c is not None):
        missing = each.absent_or_stale([videos[i] for i in usable])  # checksums are verified by read() below
        if missing:
            raise RowsMissing(each.path, split, [v.key for v in missing])
    _say_left_out(split, {v.key: bad[v.key] for v in videos if v.key in bad}, caches[0][0].path / "bad_videos.csv")
    keys = [videos[i].key for i in usable]
    groups, grouping = _groups([videos[i].key for i in usable], [named_groups[i] for i in usable]
                               if named_groups else None)
    digest = hashlib.sha256("\n".join(f"{k},{tags[i]}" for k, i in zip(keys, usable)).encode()).hexdigest()[:16]

    def read(cache, motion_cache) -> SplitData:
        features, mask, n_frames = cache.read(keys)  # every row verified (raises DamagedRows)
        motion, motion_valid = motion_cache.read(keys)[:2] if motion_cache else (None, None)
        return SplitData(keys, labels[usable], features, mask.sum(axis=1), groups, digest, n_frames, motion,
                         motion_valid, grouping)

    plain, *others = [read(*pair) for pair in caches]
    plain.views = tuple(others)
    return plain, vocabulary


def _groups(keys: list[str], named: list[str] | None) -> tuple[list[str], str]:
    """Each video's group, and how the groups were found. A group (one actor, scene or source video) stays on one
    side of every split whatever its class: when classes share scenes, splitting a scene by class would reward
    memorising scenes. From the CSV's ``group`` column, else UCF101's ``gNN`` in the name, else none: every video
    is its own group."""
    if named is not None:
        return [f"csv:{g}" if g else key for g, key in zip(named, keys)], "the CSV's group column"
    found = [group_id(key) for key in keys]
    if any(found):
        return [f"g{g}" if g else key for g, key in zip(found, keys)], "UCF101 gNN in the video names"
    return list(keys), NO_GROUPS


NO_GROUPS = "none (every video is its own group)"


def _say_left_out(split: str, left_out: dict[str, str], report, named: int = 10) -> None:
    """Missing files and undecodable ones, counted apart, the first ``named`` of them by name."""
    missing = sum(reason.endswith("file not found") for reason in left_out.values())
    parts = [plural(count, what) for count, what in
             ((missing, "missing video"), (len(left_out) - missing, "undecodable video")) if count]
    if parts:
        names = ", ".join(list(left_out)[:named]) + (f" and {len(left_out) - named} more" if len(left_out) > named
                                                     else "")
        print(f"{split}: leaving out {' and '.join(parts)}: {names} (reasons in {report})")


def validation_split(data: SplitData, fraction: float, seed: int) -> tuple[SplitData, SplitData]:
    """Stratified by class, grouped by UCF101 group (class + gNN), seeded: the first of ``round(1 / fraction)``
    grouped folds (:func:`grouped_folds`).

    Unlike the seed's ``validation_split=0.3`` (the last 30% of a class-sorted
    CSV), every class appears on both sides and no group is split.
    """
    train_rows, val_rows = _holdout_rows(data, fraction, seed)
    return data.subset(train_rows), data.subset(val_rows)


def _holdout_rows(data: SplitData, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    folds = max(2, round(1 / fraction))
    return grouped_folds(data, folds, seed, f"a {fraction:.0%} grouped validation split",
                         "Lower training.validation_fraction or add videos")[0]


def grouped_folds(data: SplitData, folds: int, seed: int, purpose: str,
                  fix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train rows, validation rows) pairs, stratified by class and grouped, seeded (the one splitter)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(data.groups))
    if n_groups < folds:
        raise DataError(f"Expected at least {folds} video groups for {purpose}. Received: {n_groups}. {fix}.")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(data)), data.labels, data.groups))


@dataclass(frozen=True)
class Fold:
    """One train/validation pair of the selection protocol."""

    train: SplitData
    validation: SplitData
    validation_rows: np.ndarray | None = None  # where the validation videos sit in the full training split

    def out_of_fold(self, total: int, probabilities: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        """This fold's validation ``probabilities`` placed at their rows of a ``(total, C)`` array (NaN elsewhere)."""
        out = into if into is not None else np.full((total, probabilities.shape[-1]), np.nan, np.float32)
        out[self.validation_rows] = probabilities
        return out


def make_folds(data: SplitData, folds: int, fraction: float, seed: int) -> list[Fold]:
    """``folds`` grouped, stratified cross-validation folds; ``folds == 1``: one holdout split of ``fraction``.

    Every video is validated once across the folds, so a trial's score rests
    on all training videos instead of one small validation set.
    """
    if folds == 1:
        train_rows, val_rows = _holdout_rows(data, fraction, seed)
        return [Fold(data.subset(train_rows), data.subset(val_rows), np.asarray(val_rows))]
    return [Fold(data.subset(train_rows), data.subset(val_rows), np.asarray(val_rows))
            for train_rows, val_rows in grouped_folds(
        data, folds, seed, f"{folds}-fold cross-validation", "Set training.cv_folds lower (1 = one holdout split)")]


def selection_digest(data: SplitData, folds: int, fraction: float, seed: int) -> str:
    """Identifies the selection protocol: same digest, comparable validation scores."""
    protocol = f"{data.digest}|cv={folds}|" + (f"fraction={fraction}|" if folds == 1 else "") + f"seed={seed}"
    return hashlib.sha256(protocol.encode()).hexdigest()[:16]


def split_arrays(config: Config, split: str, length: int | None = None,
                 vocabulary: Vocabulary | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Vocabulary]:
    """``(features, mask, labels, vocabulary)`` of a split at ``length`` (default: the cached maximum).

    Extracts whatever is missing first. For notebooks and other models than ours.
    """
    from videoclf.features.extract import extract_split
    from videoclf.features.backbones import resolve_weights

    weights = resolve_weights(config.extractor)
    extract_split(config, split, weights)
    data, vocabulary = load_split(config, split, weights, vocabulary)
    features, mask, labels = data.arrays(length or config.sampling.max_seq_length)
    return features, mask, labels, vocabulary
