"""The test clips a model gets wrong, as something to look at (what W&B Tables shows for a classifier).

Each misclassified clip is one row: its name, true and predicted class, the
confidence of the prediction, the probability it gave the true class, every
class's probability, and a strip of frames sampled evenly across the clip.
Logged with MLflow's ``log_table`` (the images beside it), the table opens in
the run's artifact view; the search logs it on its parent run for the
registered model, ``evaluate`` on its evaluation run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MISTAKES_TABLE = "evaluation/mistakes.json"  # artifact of the parent run (search) or the evaluation run
STRIP_FRAMES = 8  # frames in a clip's strip, sampled evenly across it
STRIP_SIZE = 64  # pixels, each frame of the strip
MOST_SHOWN = 100  # rows at most: the most confident mistakes first


def mistakes(paths: list[str], labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...],
             most: int = MOST_SHOWN) -> pd.DataFrame:
    """One row per misclassified clip (the most confident mistakes first, at most ``most``): ``video``, ``true``,
    ``predicted``, ``confidence``, ``p_true``, then a probability column per class."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:most]
    table = pd.DataFrame({"video": [str(paths[i]) for i in wrong],
                          "true": [classes[labels[i]] for i in wrong],
                          "predicted": [classes[predicted[i]] for i in wrong],
                          "confidence": probabilities[wrong, predicted[wrong]].round(4),
                          "p_true": probabilities[wrong, labels[wrong]].round(4)})
    for index, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[wrong, index].round(4)
    return table


def frame_strip(path: str | Path, frames: int = STRIP_FRAMES, size: int = STRIP_SIZE) -> np.ndarray | None:
    """``frames`` frames sampled evenly across the clip, side by side (RGB, ``size`` pixels high); None when it
    cannot be decoded any more."""
    from videoclf.errors import VideoError
    from videoclf.features.decode import decode_sampled

    try:
        clip = decode_sampled(path, frames, size)
    except VideoError:
        return None
    return np.concatenate(list(clip.frames), axis=1).astype(np.uint8)


def log_mistakes(client, run_id: str, table: pd.DataFrame) -> int:
    """Logs ``table`` with each clip's frame strip (``frames``) as ``MISTAKES_TABLE`` on ``run_id``; returns its
    rows (nothing is logged when there are none)."""
    import mlflow

    if table.empty:
        return 0
    blank = np.zeros((STRIP_SIZE, STRIP_SIZE * STRIP_FRAMES, 3), np.uint8)  # a clip that no longer decodes
    strips = [frame_strip(path) for path in table["video"]]
    shown = table.assign(video=[Path(v).name for v in table["video"]],
                         frames=[mlflow.Image(blank if s is None else s) for s in strips])
    client.log_table(run_id, data=shown[["video", "frames", *table.columns[1:]]], artifact_file=MISTAKES_TABLE)
    return len(table)
