"""The one typed configuration tree, loaded from ``experiments/*.yaml``.

Code receives these objects, never dicts. Unknown keys, wrong types and missing
files raise one :class:`ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from videoclf.errors import ConfigError
from videoclf.features.views import MAX_VIEWS

DEFAULT_CONFIG = Path("experiments/demo.yaml")
SHIPPED_PACKAGE = "videoclf.experiments"  # experiments/, installed with the package (pyproject.toml's package-dir)
AUTO_CV_BELOW = 1000  # training videos under which `cv_folds: auto` cross-validates


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ClipLengths(_Section):
    """A generated set's clip lengths: ``min_frames <= max_frames``."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_frames > self.max_frames:
            raise ValueError(f"Expected min_frames <= max_frames. Received: {self.min_frames} > {self.max_frames}")
        return self


class DemoConfig(_ClipLengths):
    """Parameters of the embedded synthetic data set (see videoclf.data.demo)."""

    seed: int = 0
    train_groups: int = Field(20, ge=2)
    test_groups: int = Field(5, ge=1)
    clips_per_group: int = Field(3, ge=1)
    min_frames: int = Field(30, ge=1)
    max_frames: int = Field(150, ge=1)


class PhotoMotionConfig(_ClipLengths):
    """Parameters of the embedded photo-motion set (real photos, a virtual camera; see videoclf.data.photo_motion)."""

    seed: int = 0
    clips_per_photo: int = Field(3, ge=1)
    min_frames: int = Field(8, ge=2)
    max_frames: int = Field(48, ge=2)
    # "shifted": test clips filmed unlike training (closer framing, larger frames, longer clips, speeds and zooms
    # at and past the training ranges' ends, more noise): a set whose test differs from training
    test_camera: Literal["same", "shifted"] = "same"


class DataConfig(_Section):
    """Where the videos and their ``video_name,tag`` CSVs live.

    Relative paths resolve against the working directory; CSVs and video
    folders resolve against ``root``.
    """

    root: Path = Path("data/demo")
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    train_videos: str = "."
    test_videos: str = "."
    classes: list[str] | None = None
    demo: DemoConfig | None = None
    photo_motion: PhotoMotionConfig | None = None

    @model_validator(mode="after")
    def _one_generator(self) -> "DataConfig":
        if self.demo is not None and self.photo_motion is not None:
            raise ValueError("Expected at most one of data.demo and data.photo_motion (both generate data.root)")
        return self

    def csv_path(self, split: str) -> Path:
        return self.root / {"train": self.train_csv, "test": self.test_csv}[split]

    def videos_dir(self, split: str) -> Path:
        return self.root / {"train": self.train_videos, "test": self.test_videos}[split]


class SamplingConfig(_Section):
    """How frames are chosen and shaped before the extractor sees them."""

    max_seq_length: int = Field(20, ge=1)
    image_size: int = Field(224, ge=32)
    crop: Literal["none", "center"] = "none"
    # cached views per video (videoclf.features.views): training sees them all, test and prediction average over
    # them; each view costs one more extraction and as much more training (README "Measured")
    views: int = Field(1, ge=1, le=MAX_VIEWS)


class ExtractorConfig(_Section):
    """Which frame model turns pictures into feature vectors.

    ``weights``: ``imagenet`` (the real weights; Keras download or its cache),
    ``none`` (random init from ``seed``), or a path to a local weights file.
    """

    name: Literal["inception_v3", "efficientnet_lite0"] = "inception_v3"
    weights: str = "imagenet"
    seed: int = 1337
    batch_size: int = Field(32, ge=1)
    # auto: LiteRT (XNNPACK) on CPU-only machines where ai-edge-litert is installed, else TensorFlow. Features
    # are equal either way (within float rounding), so the runtime is not part of the cache key.
    runtime: Literal["auto", "litert", "tensorflow"] = "auto"
    # float32: the backbone's own features. int8 (LiteRT only): faster on a CPU (README "Measured"), features
    # within a stated tolerance of float32's (videoclf.features.quantize); they differ, so they have their own
    # cache key and search id.
    precision: Literal["float32", "int8"] = "float32"

    @model_validator(mode="after")
    def _int8_on_litert(self) -> "ExtractorConfig":
        if self.precision == "int8" and self.runtime == "tensorflow":
            raise ValueError("Expected extractor.runtime auto or litert with extractor.precision=int8 (the int8 "
                             "model runs on LiteRT). Received: runtime=tensorflow")
        return self


class MotionConfig(_Section):
    """The motion stream: dense optical flow at each sampled frame, summarised per step (videoclf.features.motion).

    Cached beside the appearance features under its own key, so turning it on for an existing cache computes
    only the flow, never the CNN.
    """

    enabled: bool = False
    algorithm: Literal["dis", "farneback"] = "dis"
    preset: Literal["ultrafast", "fast", "medium"] = "ultrafast"  # DIS only
    frame_width: int = Field(128, ge=16, le=1024)  # grey frame width the flow is computed at (aspect kept)
    grid: int = Field(2, ge=1, le=8)  # cells per side for the local statistics


class CacheConfig(_Section):
    """The HDF5 feature cache and how tolerant extraction is of bad videos."""

    dir: Path = Path("features_cache")
    dtype: Literal["float16", "float32"] = "float16"
    # videos a CSV lists that are missing or undecodable: 0 (default) stops the job naming them all; a fraction
    # leaves up to that many out, named on the console and in bad_videos.csv
    max_bad_fraction: float = Field(0.0, ge=0.0, le=1.0)


class FloatRange(_Section):
    """A continuous hyperparameter range (KerasTuner ``hp.Float``)."""

    min: float
    max: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "FloatRange":
        if self.min > self.max:
            raise ValueError(f"Expected min <= max. Received: min={self.min}, max={self.max}")
        if self.log and self.min <= 0:
            raise ValueError("Expected min > 0 for a log-scale range")
        return self


PositiveInts = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
NonNegativeInts = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
Fractions = Annotated[list[Annotated[float, Field(ge=0.0, lt=1.0)]], Field(min_length=1)]
Flags = Annotated[list[bool], Field(min_length=1)]
Family = Literal["pooled", "tcn", "gru", "attention"]
Inputs = Literal["frames", "frames+deltas", "deltas", "steps"]
Stream = Literal["appearance", "motion", "appearance+motion"]
POOLING_STATS = ("mean", "max", "min", "std")


class SearchSpace(_Section):
    """The sequence model's hyperparameters: a one-element list is a fixed value.

    ``family`` picks the model (see videoclf.model); the family's own keys
    (``gru_units``…, ``conv_*``, ``attention_units``, ``pooling``) are searched
    only in the trials that draw it.
    """

    family: Annotated[list[Family], Field(min_length=1)] = ["gru"]
    # which cached streams a trial reads; ``inputs`` shapes the appearance stream (motion needs motion.enabled)
    streams: Annotated[list[Stream], Field(min_length=1)] = ["appearance"]
    inputs: Annotated[list[Inputs], Field(min_length=1)] = ["frames"]
    temporal_centering: Flags = [True]
    normalize: Flags = [True]
    input_dropout: FloatRange | Fractions = [0.5]
    frame_units: NonNegativeInts = [64, 128]
    pooling: Annotated[list[str], Field(min_length=1)] = ["mean+std"]
    num_gru_layers: PositiveInts = [1, 2]
    gru_units: Annotated[list[PositiveInts], Field(min_length=1)] = [[32, 64, 128], [32, 64]]
    bidirectional: Flags = [False]
    recurrent_dropout: Fractions = [0.0]
    conv_filters: PositiveInts = [64]
    conv_layers: PositiveInts = [2]
    kernel_size: PositiveInts = [3]
    attention_units: PositiveInts = [32]
    dropout: FloatRange | Fractions = FloatRange(min=0.0, max=0.5, step=0.1)
    dense_units: NonNegativeInts = [0]
    learning_rate: FloatRange | Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=1)] = \
        FloatRange(min=1e-4, max=1e-2, log=True)
    seq_length: PositiveInts = [10, 20]
    batch_size: PositiveInts = [16, 32]

    @field_validator("pooling")
    @classmethod
    def _known_pooling(cls, choices: list[str]) -> list[str]:
        for choice in choices:
            parts = choice.split("+")
            if not all(p.strip() in POOLING_STATS for p in parts):
                raise ValueError(f"Expected statistics from {POOLING_STATS} joined by '+' (e.g. mean+std). "
                                 f"Received: {choice!r}")
        return choices

    @field_validator("input_dropout", "dropout")
    @classmethod
    def _dropout_range(cls, spec):
        if isinstance(spec, FloatRange) and not (0.0 <= spec.min and spec.max < 1.0):
            raise ValueError(f"Expected 0 <= dropout < 1. Received: min={spec.min}, max={spec.max}")
        return spec

    @model_validator(mode="after")
    def _layers_have_widths(self) -> "SearchSpace":
        if "gru" in self.family and max(self.num_gru_layers) > len(self.gru_units):
            raise ValueError(
                f"Expected one list of widths per GRU layer in gru_units. Received: "
                f"num_gru_layers up to {max(self.num_gru_layers)}, {len(self.gru_units)} width lists"
            )
        return self


SelectionRule = Literal["best", "one_se", "ensemble"]  # videoclf.search.select


class TuningConfig(_Section):
    """The KerasTuner search itself."""

    tuner: Literal["random", "bayesian", "hyperband"] = "random"
    max_trials: int = Field(12, ge=1)
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    executions_per_trial: int = Field(1, ge=1)
    first_trials: list[dict[str, Any]] = []  # random search: partial values tried first, the rest drawn
    final_seeds: int = Field(3, ge=1)
    # what is registered (videoclf.search.select): the best candidate, the simplest within one standard error
    # of the best (baselines included), or a greedy ensemble of trials and baselines
    select: SelectionRule = "one_se"
    baselines: list[Literal["pooled_logreg", "step_stats_logreg", "motion_logreg", "seed_gru"]] = [
        "pooled_logreg", "step_stats_logreg", "seed_gru"]
    directory: Path = Path("tuner_runs")
    project_name: str | None = None
    seed: int = 42
    overwrite: bool = False
    # distributed mode (videoclf.search.leases): a worker the chief has not heard from for this long is lost and its
    # trial goes to the next free worker, at most trial_attempts times in all
    lease_seconds: float = Field(30.0, gt=0.0)
    trial_attempts: int = Field(3, ge=1)
    # a trial running longer than trial_timeout seconds is stopped (none: no limit); in distributed mode, so is one
    # whose worker ends no epoch for trial_progress_timeout seconds (hung): each then runs again elsewhere, within
    # trial_attempts
    trial_timeout: float | None = Field(None, gt=0.0)
    trial_progress_timeout: float | None = Field(1800.0, gt=0.0)


class TrainingConfig(_Section):
    """How each trial trains."""

    epochs: int = Field(40, ge=1)
    early_stopping_patience: int | None = Field(8, ge=1)
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    cv_folds: int | Literal["auto"] = "auto"
    seed: int = 42

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value):
        if value != "auto" and value < 1:
            raise ValueError(f"Expected cv_folds >= 1 or 'auto'. Received: {value}")
        return value

    def folds_for(self, n_videos: int) -> int:
        """``auto``: 3-fold cross-validation below 1000 training videos (one split is too noisy), else 1."""
        if self.cv_folds == "auto":
            return 3 if n_videos < AUTO_CV_BELOW else 1
        return self.cv_folds


class TrackingConfig(_Section):
    """Where results go in MLflow (the tracking URI comes from MLflow's own rules)."""

    experiment_name: str = "videoclf"
    registered_model_name: str = "videoclf"
    champion_alias: str = "champion"


class ServingConfig(_Section):
    """``videoclf serve``: where it listens, what it may read, and how much work one request may ask for."""

    host: str = "127.0.0.1"  # this machine only; 0.0.0.0 (all interfaces) only behind a proxy you trust
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    allowed_roots: list[Path] = []  # folders whose files may be named by path; none: bytes only
    max_videos: int = Field(16, ge=1)  # per request
    max_request_mb: float = Field(64.0, gt=0)  # per request body (base64 adds a third to the videos' size)
    timeout_s: float = Field(60.0, gt=0)  # from arrival; videos not started by then come back with an error
    max_waiting: int = Field(8, ge=0)  # requests queued per worker beyond the one running; more get 503
    body_timeout_s: float = Field(30.0, gt=0)  # the whole request body must arrive within this; 408 otherwise
    shutdown_s: float = Field(5.0, ge=0)  # on SIGTERM, how long running requests may finish before they are cut

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 2**20)


class Config(_Section):
    """One experiment: data, features, search, tracking and serving."""

    _set_keys: frozenset[str] = PrivateAttr(default_factory=frozenset)  # dotted keys set on the command line

    def was_set(self, dotted: str) -> bool:
        """Whether ``--set`` (or a flag) gave this key, as opposed to the config file or a default."""
        return dotted in self._set_keys

    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    extractor: ExtractorConfig = ExtractorConfig()
    motion: MotionConfig = MotionConfig()
    cache: CacheConfig = CacheConfig()
    search: SearchSpace = SearchSpace()
    tuning: TuningConfig = TuningConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()

    @model_validator(mode="after")
    def _first_trials_in_space(self) -> "Config":
        space = self.search.model_dump()
        for index, values in enumerate(self.tuning.first_trials):
            for key, value in values.items():
                if key not in space:
                    raise ValueError(f"Expected tuning.first_trials[{index}] keys from the search section. "
                                     f"Received: {key!r}")
                if isinstance(space[key], list) and value not in space[key]:
                    raise ValueError(f"Expected tuning.first_trials[{index}].{key} among search.{key} "
                                     f"{space[key]}. Received: {value!r}")
        if self.tuning.first_trials and self.tuning.tuner != "random":
            raise ValueError("Expected tuning.first_trials only with tuner: random")
        return self

    @model_validator(mode="after")
    def _motion_enabled_when_used(self) -> "Config":
        users = [f"search.streams {s!r}" for s in self.search.streams if "motion" in s]
        users += ["tuning.baselines 'motion_logreg'"] if "motion_logreg" in self.tuning.baselines else []
        users += [f"tuning.first_trials[{i}] streams {t['streams']!r}" for i, t in enumerate(self.tuning.first_trials)
                  if "motion" in str(t.get("streams", ""))]
        if users and not self.motion.enabled:
            raise ValueError(f"Expected motion.enabled: true for {', '.join(users)} (they read the motion stream). "
                             "To search appearance only, set search.streams=[appearance] and leave out what "
                             "else reads motion")
        return self

    @model_validator(mode="after")
    def _lengths_fit_cache(self) -> "Config":
        too_long = [n for n in self.search.seq_length if n > self.sampling.max_seq_length]
        if too_long:
            raise ValueError(
                f"Expected search.seq_length choices <= sampling.max_seq_length "
                f"({self.sampling.max_seq_length}): shorter sequences are sliced from the cache. "
                f"Received: {too_long}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Turns ``["tuning.max_trials=3"]`` into a nested dict; values are YAML scalars."""
    tree: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Expected an override like section.key=value. Received: {pair!r}")
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override {pair!r} conflicts with another override of {part!r}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def updated(section: _Section, values: dict, source: str) -> _Section:
    """A config section with ``values`` (e.g. command-line flags; None: not given) applied and validated; a bad value
    is one ConfigError naming ``source`` and the key."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"Invalid config {source}:"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check its spelling against experiments/demo.yaml)")
        elif isinstance(item.get("input"), dict):  # a rule across keys: the section itself is no help to print
            lines.append(f"  {key}: {item['msg']}")
        else:
            lines.append(f"  {key}: {item['msg']} (received {item.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                defaults_only: bool = False) -> Config:
    """Loads an experiment YAML, applies ``--set`` overrides, validates the result.

    ``defaults_only`` starts from the built-in defaults instead of a file.
    """
    if defaults_only:
        given = parse_overrides(overrides)
        try:
            config = Config.model_validate(given)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, f"(defaults) with overrides {overrides}")) from None
        config._set_keys = frozenset(_dotted(given))
        return config
    path = config_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} cannot be read: {exc}") from None
    if raw is None:  # empty, or comments only: never silently the built-in defaults (ImageNet weights, a network)
        raise ConfigError(f"Config file {path} is empty. Start from one in experiments/ (e.g. cp "
                          f"experiments/demo.yaml {path}) and edit it.")
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections. Received: {type(raw).__name__}")
    given = parse_overrides(overrides)
    merged = _merge(raw, given)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        source = f"{path}" + (f" with overrides {overrides}" if overrides else "")
        raise ConfigError(_describe(exc, source)) from None
    config._set_keys = frozenset(_dotted(given))
    if config.was_set("data.root") and not config.data.root.exists():
        raise ConfigError(
            f"data.root {config.data.root} does not exist (set on the command line; {path} says "
            f"{(raw.get('data') or {}).get('root', DataConfig().root)}). Point it at a folder holding train.csv and "
            "test.csv (columns video_name,tag) and the videos; to generate a data set there instead, create the "
            "folder first.")
    return config


def shipped_configs() -> dict[str, Path]:
    """The experiment configs the package carries, by name (``demo``, ``photo_motion``, ...): ``experiments/`` as
    installed (``videoclf.experiments``), or beside the package in a checkout that is not installed."""
    import importlib.resources

    try:
        folder = Path(str(importlib.resources.files(SHIPPED_PACKAGE)))
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parents[1] / "experiments"
    return {file.stem: file for file in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def config_path(given: str | Path | None) -> Path:
    """The file a command reads: ``given`` where it exists; else a shipped config of that name (``demo``,
    ``demo.yaml`` or ``experiments/demo.yaml``), so every command works from any folder as it does in the
    repository. Raises one :class:`ConfigError` naming where it looked and what is shipped."""
    path = Path(given) if given else DEFAULT_CONFIG
    if path.is_file():
        return path
    shipped = shipped_configs()
    if path.parent in (Path("."), Path("experiments")) and path.suffix in ("", ".yaml", ".yml") and \
            path.stem in shipped:
        return shipped[path.stem]
    raise ConfigError(f"Config file not found: {path} (from {Path.cwd()}). Shipped configs, usable by name from any "
                      f"folder: {', '.join(shipped) or 'none found'} (e.g. --config demo); `videoclf init NAME` copies "
                      "one here to edit.")


def _dotted(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of a nested override tree: ``{"data": {"root": x}}`` → ``["data.root"]``."""
    keys = []
    for key, value in tree.items():
        keys += _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys
