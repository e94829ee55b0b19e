"""Using a registered model: predict on video files, evaluate on a split (logged to MLflow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from videoclf.tempfiles import private_folder
from videoclf.config import Config
from videoclf.errors import DataError, VideoclfError
from videoclf.evaluation import Evaluation, evaluate_probabilities, format_report, write_report_files
from videoclf.features.decode import shown
from videoclf.mistakes import MISTAKES_TABLE, log_mistakes, mistakes
from videoclf.registered.format import load_settings
from videoclf.registered.pyfunc import sampled_frames
from videoclf.registered.requests import window_setting
from videoclf.registered.wire import (
    ERROR_COLUMN,
    KIND_COLUMN,
    PATH_COLUMN,
    STRIDE_COLUMN,
    WARNING_COLUMN,
    WINDOW_COLUMN,
    WINDOW_END_COLUMN,
    WINDOW_START_COLUMN,
)


def default_model_uri(config: Config) -> str:
    return f"models:/{config.tracking.registered_model_name}@{config.tracking.champion_alias}"


def fetch_video_model(uri: str) -> str:
    """The model's files on this machine (downloaded once from the store; a local folder as it is): one clear error
    for a missing model or an unreadable store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if Path(uri).is_dir():
        return uri
    if uri.startswith("models:/"):
        from videoclf.tracking import open_store, sqlite_file

        database = sqlite_file(mlflow.get_tracking_uri())
        if database is not None and not database.is_file():
            raise VideoclfError(  # opening it would create an empty store here: a failed command writes nothing
                f"Cannot load model {uri}: there is no MLflow store at {database} (nothing was tuned here). Run "
                "`videoclf tune` first, set MLFLOW_TRACKING_URI to the store that holds the model, or pass --model "
                "with a model folder.")
        open_store()  # a corrupt store is its own clear error, not "model not found"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except (MlflowException, OSError) as exc:
        raise VideoclfError(
            f"Cannot load model {uri} from MLflow ({mlflow.get_tracking_uri()}): {str(exc).splitlines()[0]}. "
            "Run `videoclf tune` first, or pass --model with a registered model URI (models:/NAME@ALIAS or "
            "models:/NAME/VERSION); set MLFLOW_TRACKING_URI if the store is elsewhere."
        ) from None


def say_which_model(uri: str, classes, config: Config | None = None):
    """The first line of ``predict``, ``evaluate`` and ``serve``: which model answers (name, version, the data folder
    it was trained on, its classes); a warning when ``data.root`` was given and the model was trained elsewhere.
    Returns the model's :class:`~videoclf.registered.registry.ModelIdentity`."""
    from videoclf.registered.registry import identify

    identity = identify(uri)
    print(f"model: {identity.describe()}; classes: {', '.join(classes)}", flush=True)
    if config is not None and identity.data_root and config.was_set("data.root") and \
            Path(identity.data_root).resolve() != config.data.root.resolve():
        print(f"warning: {identity.uri} was trained on {identity.data_root}, not on {config.data.root} (data.root); "
              f"it answers with its own classes. Pass --model with the model trained there (after `videoclf tune "
              f"--set data.root={config.data.root}`: models:/{config.tracking.registered_model_name}@"
              f"{config.tracking.champion_alias}).", flush=True)
    return identity


def load_video_model(uri: str):
    """The registered model, loaded (every command and the server's workers load it here)."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    local = fetch_video_model(uri)
    try:
        return mlflow.pyfunc.load_model(local)
    except (MlflowException, OSError) as exc:
        raise VideoclfError(f"Model {uri} cannot be loaded ({str(exc).splitlines()[0]}); its files are in {local}. "
                            "Re-register it with `videoclf tune`, or pass --model with another one.") from None


def format_prediction(row: pd.Series, classes: list[str]) -> str:
    """The seed's display: classes sorted by probability, as percentages (a window's span first)."""
    if isinstance(row[ERROR_COLUMN], str):
        return f"{shown(row[PATH_COLUMN])}\n  error: {row[ERROR_COLUMN]}"
    title = str(row[PATH_COLUMN])
    if row.get(KIND_COLUMN) == "window":
        title += f"  [{row[WINDOW_START_COLUMN]:.1f} s - {row[WINDOW_END_COLUMN]:.1f} s]"
    elif row.get(KIND_COLUMN) == "video":
        title += "  (mean over the windows)"
    order = sorted(classes, key=lambda c: -row[c])
    lines = [title] + [f"  {c}: {row[c] * 100:5.2f}%" for c in order]
    if isinstance(row.get(WARNING_COLUMN), str):
        lines.append(f"  warning: {row[WARNING_COLUMN]}")
    return "\n".join(lines)


def write_gif(frames: np.ndarray, path: Path, fps: int = 10) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def predict_videos(paths: list[str], model_uri: str, gif: Path | None = None, csv: Path | None = None,
                   window: float | None = None, stride: float | None = None, config: Config | None = None
                   ) -> pd.DataFrame:
    """Prints (and optionally writes) predictions; ``window`` seconds predicts each time window of each video.

    Raises VideoclfError after printing when any video failed, so the exit code says so.
    """
    for target in (gif, csv):
        if target is not None and not Path(target).parent.is_dir():
            raise VideoclfError(f"Output folder {Path(target).parent} does not exist; create it or choose another path.")
    try:
        span = window_setting(window, stride, "--window", "--stride", nan_is_missing=False)
    except ValueError as exc:
        raise VideoclfError(str(exc)) from None
    model = load_video_model(model_uri)
    settings = load_settings(model)
    say_which_model(model_uri, settings.classes, config)
    request = pd.DataFrame({PATH_COLUMN: [str(p) for p in paths]})
    if span:
        request[WINDOW_COLUMN], request[STRIDE_COLUMN] = span
    table = model.predict(request)
    for _, row in table.iterrows():
        print(format_prediction(row, settings.classes))
    if csv:
        table.to_csv(csv, index=False)
        print(f"predictions written to {csv}")
    failed = table[table[ERROR_COLUMN].map(lambda e: isinstance(e, str))]
    if gif:
        failed_paths = set(failed[PATH_COLUMN])
        for path in paths:
            if str(path) in failed_paths:
                continue
            target = gif if len(paths) == 1 else gif.with_name(f"{gif.stem}_{Path(path).stem}{gif.suffix}")
            write_gif(sampled_frames(str(path), settings), target)
            print(f"sampled frames written to {target}")
    if len(failed):
        raise VideoclfError(f"{len(failed)} of {len(paths)} videos could not be predicted (errors above).")
    return table


def evaluate_model(config: Config, model_uri: str, split: str = "test") -> Evaluation:
    """Predicts the split's raw videos through the registered model and logs an evaluation run."""
    import mlflow

    from videoclf.data.table import read_video_table

    table = read_video_table(config.data.csv_path(split))
    videos_dir = config.data.videos_dir(split)
    model = load_video_model(model_uri)
    classes = list(load_settings(model).classes)
    identity = say_which_model(model_uri, classes, config)
    unknown = sorted(set(table.tag) - set(classes))
    if unknown:
        raise DataError(f"{config.data.csv_path(split)}: label(s) {unknown} are not classes of {model_uri} "
                        f"({classes}).")
    predictions = model.predict(pd.DataFrame({PATH_COLUMN: [str(videos_dir / n) for n in table.video_name]}))
    ok = predictions[ERROR_COLUMN].isna().to_numpy()
    if not ok.all():
        print(f"{(~ok).sum()} videos could not be decoded and are left out, e.g. "
              f"{predictions[ERROR_COLUMN][~ok].iloc[0]}")
    labels = np.array([classes.index(t) for t in table.tag])[ok]
    evaluation = evaluate_probabilities(predictions.loc[ok, classes].to_numpy(), labels, tuple(classes))
    from videoclf.console import confusion_text

    print(f"{model_uri} on {split} ({ok.sum()} videos):\n{format_report(evaluation)}\n\n"
          f"confusion matrix (rows: true class, columns: predicted):\n"
          f"{confusion_text(evaluation.confusion, evaluation.classes)}")

    from videoclf.console import ui_command, ui_url
    from videoclf.tracking import experiment_id, open_store

    experiment = experiment_id(open_store(), config.tracking.experiment_name)
    tags = identity.tags()
    with mlflow.start_run(experiment_id=experiment, run_name=f"evaluate {model_uri} on {split}", tags={
            "videoclf_role": "evaluation", "model_uri": model_uri, "split": split, **tags}) as run:
        # model_id links the metrics to the logged model, so they show on its page in the UI too
        mlflow.log_metrics(evaluation.metrics(f"{split}_"), model_id=tags.get("model_id"))
        with private_folder("eval") as tmp:
            write_report_files(evaluation, Path(tmp), title=f"{model_uri} {split}")
            predictions.to_csv(Path(tmp) / "predictions.csv", index=False)
            mlflow.log_artifacts(tmp, "evaluation")
        paths = [str(videos_dir / name) for name in table.video_name[ok]]
        wrong = log_mistakes(mlflow.tracking.MlflowClient(), run.info.run_id, mistakes(paths, labels, evaluation.probabilities,
                                                                        evaluation.classes))
    store = mlflow.get_tracking_uri()
    if wrong:
        print(f"\n{wrong} misclassified clips, with their frames, in the run's artifact {MISTAKES_TABLE}")
    print(f"\nlogged as run {run.info.run_id} in experiment '{config.tracking.experiment_name}' ({store}): "
          f"{ui_url(experiment, run.info.run_id)} after `{ui_command(store)}`")
    return evaluation
