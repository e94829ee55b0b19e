"""What a person sees in the terminal: TensorFlow's start-up noise silenced, and the job's closing summary.

TensorFlow 2.21 logs through absl before its log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide the CPU-only machine's "Could not find
cuda drivers" and "failed call to cuInit" lines. They are written to file
descriptor 2 while TensorFlow imports and lists its devices; we point that
descriptor at /dev/null for exactly that moment (``--verbose`` keeps them).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pandas as pd


@contextlib.contextmanager
def silenced_stderr():
    """File descriptor 2 points at /dev/null for the block: C++ libraries (TensorFlow, LiteRT) print there
    directly, so Python's own redirection cannot hide them (``--verbose`` skips the callers' use)."""
    if os.environ.get("VIDEOCLF_VERBOSE"):
        yield
        return
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def quiet_tensorflow() -> None:
    """Imports TensorFlow and initialises its devices with stderr silenced, then quiets its Python loggers.

    Call it just before TensorFlow is first needed (idempotent): commands that end up not needing it
    (config errors, a fully cached extraction with a kept LiteRT model) never pay for the import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also oneDNN's "E0000 ... DT_BOOL" notices later on
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with silenced_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    if os.environ.get("VIDEOCLF_VERBOSE"):
        return
    import absl.logging

    absl.logging.set_verbosity("error")
    tf.get_logger().setLevel("ERROR")  # retracing notices and the like


def plural(count: int, noun: str) -> str:
    """``1 video``, ``2 videos``: counts in messages read as English."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def confusion_text(confusion: np.ndarray, classes) -> str:
    """The confusion matrix as a table: rows are true classes, columns predicted ones."""
    table = pd.DataFrame(confusion, index=[f"true {c}" for c in classes], columns=list(classes))
    return table.to_string()


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-style markdown table (what MLflow's run description renders)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|")

    rows = [[str(c) for c in table.columns], ["---"] * len(table.columns)]
    rows += [[cell(v) for v in record] for record in table.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def ui_url(experiment_id: str, run_id: str, port: int = 5000) -> str:
    """A run's page in MLflow's UI (its training view: ``videoclf.ui_views``)."""
    from videoclf.ui_views import run_url

    return run_url(experiment_id, run_id, port)


def ui_command(tracking_uri: str) -> str:
    """How to browse this store: ``mlflow ui`` for a local store, the server itself otherwise."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def tune_summary(*, tracking_uri: str, experiment: str, experiment_id: str, run_id: str, search_id: str,
                 registration, evaluation, example_video: Path | None, alias: str) -> str:
    """The closing lines of ``tune``: where results are, what was registered, and what to do next."""
    from videoclf.ui_views import CHARTS, trials_url

    lines = ["", "=" * 78, "summary",
             f"  tracking store : {tracking_uri}",
             f"  experiment     : {experiment} (id {experiment_id})",
             f"  search run     : {run_id}",
             f"  in the UI      : {ui_url(experiment_id, run_id)} (after the command below)",
             f"  trials by score: {trials_url(experiment_id, search_id)} (add &{CHARTS} for their curves)"]
    if registration is not None:
        decision = f"holds '{alias}'" if registration.champion else f"does not hold '{alias}'"
        lines.append(f"  registered     : {registration.name} version {registration.version}, {decision}: "
                     f"{registration.reason}")
    lines += ["", "test confusion matrix (rows: true class, columns: predicted):",
              confusion_text(evaluation.confusion, evaluation.classes), "", "next:",
              f"  {ui_command(tracking_uri)}"]
    if registration is not None and example_video is not None:
        lines.append(f"  videoclf predict {example_video} --model models:/{registration.name}/{registration.version}")
    lines.append("=" * 78)
    return "\n".join(lines)


def finished_summary(run, registration, alias: str) -> str:
    """What a re-run of a finished search says instead of working: the result, the registry entry, where to look."""
    import mlflow

    from videoclf.tracking import SEARCH_TAG
    from videoclf.ui_views import trials_url

    metrics, tags = run.data.metrics, run.data.tags
    tracking_uri = mlflow.get_tracking_uri()
    lines = ["", "=" * 78, f"search {tags[SEARCH_TAG]} finished earlier with the same data and settings: "
             "nothing to do (raise tuning.max_trials to search further)",
             f"  tracking store : {tracking_uri}",
             f"  search run     : {run.info.run_id} ({ui_url(run.info.experiment_id, run.info.run_id)} in the UI)",
             f"  trials by score: {trials_url(run.info.experiment_id, tags[SEARCH_TAG])}"]
    if "selection_score" in metrics and "test_accuracy" in metrics:
        lines.append(f"  result         : selection score {metrics['selection_score']:.4f}, test accuracy "
                     f"{metrics['test_accuracy']:.4f}")
    if registration is not None:
        holds = f"holds '{alias}'" if registration.champion else f"does not hold '{alias}'"
        lines.append(f"  registered     : {registration.name} version {registration.version}, {holds} "
                     f"({registration.reason})")
    lines += ["", "next:", f"  {ui_command(tracking_uri)}"]
    if registration is not None:
        lines.append(f"  videoclf predict VIDEO --model models:/{registration.name}/{registration.version}")
    lines.append("=" * 78)
    return "\n".join(lines)
