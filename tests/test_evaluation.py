"""Test-split numbers and report images: intervals, calibration, curves with one line per trial."""

import numpy as np
import pytest

from videoclf.evaluation import (accuracy_interval, evaluate_probabilities, expected_calibration_error,
                                 training_curves_figure)


def test_accuracy_interval_brackets_the_accuracy_narrows_with_more_videos_and_stays_honest_on_few():
    rng = np.random.default_rng(0)
    small = rng.random(40) < 0.7
    large = rng.random(4000) < 0.7
    low, high = accuracy_interval(small)
    assert low <= small.mean() <= high and 0.15 < high - low < 0.4
    big_low, big_high = accuracy_interval(large)
    assert big_high - big_low < (high - low) / 5
    # a perfect score on 12 videos is not certainty (a bootstrap said [1.000, 1.000]): Wilson's known values
    assert accuracy_interval(np.ones(12, bool)) == pytest.approx((0.7575, 1.0), abs=1e-4)
    assert accuracy_interval(np.zeros(12, bool)) == pytest.approx((0.0, 0.2425), abs=1e-4)
    assert accuracy_interval(np.r_[np.ones(7), np.zeros(3)]) == pytest.approx((0.3968, 0.8922), abs=1e-4)


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    labels = np.array([0] * 8 + [1] * 2)
    honest = np.tile([0.8, 0.2], (10, 1))  # 80% confident, right 8 times out of 10
    assert expected_calibration_error(honest, labels) < 1e-9
    overconfident = np.tile([0.01, 0.99], (10, 1))  # 99% sure of class 1, right twice
    assert expected_calibration_error(overconfident, labels) > 0.7
    evaluation = evaluate_probabilities(overconfident, labels, ("a", "b"))
    assert evaluation.accuracy == 0.2 and evaluation.ece > 0.7
    assert evaluation.interval[0] <= 0.2 <= evaluation.interval[1]


def test_training_curves_draw_one_line_per_trial_with_the_winner_highlighted():
    curves = {f"{t:02d}": {"val_accuracy": list(np.linspace(0.2, 0.5 + t / 10, 6)),
                           "val_loss": list(np.linspace(1.5, 1.0 - t / 10, 6))} for t in range(4)}
    labels = {f"{t:02d}": ("gru, appearance+motion, frames" if t % 2 else "pooled, motion") for t in range(4)}
    figure = training_curves_figure(curves, highlight="03", labels=labels)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [  # every trial labelled, in one legend
        "trial 00: pooled, motion", "trial 01: gru, appearance+motion, frames", "trial 02: pooled, motion",
        "trial 03: gru, appearance+motion, frames (winner)"]
    for ax in figure.axes:
        assert len(ax.lines) == 4
        assert all(len(line.get_xdata()) == 6 for line in ax.lines)
        winner = [line for line in ax.lines if line.get_label() == "trial 03: gru, appearance+motion, frames (winner)"]
        assert len(winner) == 1 and winner[0].get_linewidth() > max(
            line.get_linewidth() for line in ax.lines if line is not winner[0])
    assert figure.axes[0].get_xlim()[1] >= 5  # real epochs on the axis, not empty axes


def test_hyperparameter_importance_finds_what_drives_the_score_and_says_when_trials_are_too_few():
    import pandas as pd

    from videoclf.search.importance import hyperparameter_importance, importance_text

    rng = np.random.default_rng(0)
    n = 16
    trials = pd.DataFrame({"trial": [f"{i:02d}" for i in range(n)], "status": ["COMPLETED"] * n,
                           "streams": rng.choice(["motion", "appearance"], n),
                           "learning_rate": rng.uniform(1e-4, 1e-2, n), "family": rng.choice(["gru", "pooled"], n),
                           "batch_size": [16] * n,  # never varied: not in the table
                           "gru_units_0": [32.0, 64.0] + [np.nan] * (n - 2)})  # conditional: active in 2 trials
    trials["score"] = 0.4 + 0.4 * (trials.streams == "motion") + 5 * trials.learning_rate + rng.normal(0, 0.01, n)
    table = hyperparameter_importance(trials)
    assert table.hyperparameter.tolist()[:2] == ["streams", "learning_rate"]
    assert "batch_size" not in set(table.hyperparameter) and table.correlation[1] > 0.2  # higher rate, higher score
    assert np.isnan(table.correlation[0])  # categorical: no rank correlation
    assert np.isnan(table.set_index("hyperparameter").correlation["gru_units_0"])  # too few active trials
    assert "a hint with few trials, not evidence" in importance_text(table, n)
    few = hyperparameter_importance(trials.head(3))
    assert isinstance(few, str) and "too few" in few



def test_mistakes_list_the_misclassified_clips_most_confident_first_with_their_frames(tmp_path):
    """Each wrong clip: true and predicted class, confidence, p(true), every class; logged with a strip of its
    frames to a real MLflow store (a clip that no longer decodes gets a blank strip, not an error)."""
    import json

    from mlflow.tracking import MlflowClient

    from conftest import write_video
    from videoclf.mistakes import MISTAKES_TABLE, STRIP_FRAMES, STRIP_SIZE, log_mistakes, mistakes

    paths = [str(write_video(tmp_path / f"v{i}.avi", 12, seed=i)) for i in range(3)] + [str(tmp_path / "gone.avi")]
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])  # v1 and gone.avi are wrong
    table = mistakes(paths, labels, probabilities, ("a", "b"))
    assert list(table.video) == [paths[3], paths[1]]  # 0.7 confident before 0.6
    assert list(table.columns) == ["video", "true", "predicted", "confidence", "p_true", "p_a", "p_b"]
    assert list(table.true) == ["a", "b"] and list(table.predicted) == ["b", "a"] and list(table.p_true) == [0.3, 0.4]
    assert len(mistakes(paths, labels, probabilities, ("a", "b"), most=1)) == 1
    assert mistakes(paths, labels, np.eye(2)[labels], ("a", "b")).empty
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "artifacts")))
    assert log_mistakes(client, run.info.run_id, table) == 2
    logged = json.loads((tmp_path / "artifacts" / run.info.run_id / "artifacts" / MISTAKES_TABLE).read_text())
    assert [row[0] for row in logged["data"]] == ["gone.avi", "v1.avi"] and logged["columns"][1] == "frames"
    from PIL import Image

    strips = [Image.open(tmp_path / "artifacts" / run.info.run_id / "artifacts" / row[1]["filepath"])
              for row in logged["data"]]
    assert all(strip.size == (STRIP_SIZE * STRIP_FRAMES, STRIP_SIZE) for strip in strips)
    assert np.asarray(strips[0]).max() == 0 and np.asarray(strips[1]).max() > 0  # gone: blank; v1: its frames
