"""Test-split metrics and the report files logged with them (table, confusion matrix, curves)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Evaluation:
    """What the winner scores on a labelled split."""

    accuracy: float
    macro_f1: float
    per_class: pd.DataFrame  # class, precision, recall, f1, support
    confusion: np.ndarray
    classes: tuple[str, ...]
    probabilities: np.ndarray
    interval: tuple[float, float]  # 95% Wilson score interval of accuracy over videos (accuracy_interval)
    ece: float  # expected calibration error (10 confidence bins)
    labels: np.ndarray

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}accuracy": self.accuracy, f"{prefix}accuracy_ci_low": self.interval[0],
                f"{prefix}accuracy_ci_high": self.interval[1], f"{prefix}macro_f1": self.macro_f1,
                f"{prefix}ece": self.ece}


def standard_error(scores: list[float]) -> float:
    """Standard error of a mean score over folds (sample std / sqrt(k)); 0 for a single score."""
    return float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0


def accuracy_interval(correct: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the share of ``correct`` videos: a binomial proportion's interval that stays honest
    on a few videos and at 0 or 1 (a bootstrap of 12 right answers out of 12 says [1, 1]; Wilson says [0.76, 1])."""
    import statistics

    correct = np.asarray(correct, np.float64)
    n = len(correct)
    if n == 0:
        return float("nan"), float("nan")
    z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
    share, spread = correct.mean(), z * z / n
    center = (share + spread / 2) / (1 + spread)
    half = z / (1 + spread) * np.sqrt(share * (1 - share) / n + spread / (4 * n))
    return float(max(0.0, center - half)), float(min(1.0, center + half))


def calibration_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per confidence bin: count, mean confidence, accuracy (the reliability diagram's data)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        rows.append({"low": edges[b], "high": edges[b + 1], "count": int(inside.sum()),
                     "confidence": float(confidence[inside].mean()) if inside.any() else np.nan,
                     "accuracy": float(correct[inside].mean()) if inside.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over confidence bins, weighted by how many videos fall in each."""
    table = calibration_bins(probabilities, labels, bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return float("nan")
    gaps = (filled["accuracy"] - filled["confidence"]).abs()
    return float((gaps * filled["count"]).sum() / filled["count"].sum())


def evaluate_probabilities(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> Evaluation:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=indices,
                                                                     zero_division=0)
    table = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                          "support": support})
    return Evaluation(float(accuracy_score(labels, predicted)),
                      float(f1_score(labels, predicted, labels=indices, average="macro", zero_division=0)),
                      table, confusion_matrix(labels, predicted, labels=indices), tuple(classes), probabilities,
                      accuracy_interval(predicted == labels), expected_calibration_error(probabilities, labels),
                      np.asarray(labels))


def format_report(evaluation: Evaluation) -> str:
    low, high = evaluation.interval
    lines = [f"accuracy {evaluation.accuracy:.4f} (95% Wilson interval {low:.3f}-{high:.3f} over "
             f"{len(evaluation.labels)} videos)"
             f"   macro F1 {evaluation.macro_f1:.4f}   calibration error {evaluation.ece:.3f}",
             evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves_figure(curves: dict[str, dict[str, list[float]]], highlight: str | None = None,
                           labels: dict[str, str] | None = None):
    """Validation accuracy and loss per epoch, one line per trial (``{trial: {metric: values}}``), each labelled
    (``labels``: what the trial was) in one legend; the winner bold and crimson."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, metric in zip(axes, ("val_accuracy", "val_loss")):
        for trial, trial_curves in sorted(curves.items()):
            values = trial_curves.get(metric)
            if not values:
                continue
            winner = trial == highlight
            label = f"trial {trial}" + (f": {labels[trial]}" if labels and labels.get(trial) else "")
            ax.plot(range(len(values)), values, linewidth=2.5 if winner else 0.9, alpha=1.0 if winner else 0.6,
                    color="crimson" if winner else None, label=label + (" (winner)" if winner else ""),
                    zorder=3 if winner else 2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " ") + " (mean over folds)")
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    fig.suptitle(f"{len(curves)} trials")
    fig.tight_layout()
    return fig


def write_training_curves(curves: dict[str, dict[str, list[float]]], path: Path, highlight: str | None = None,
                          labels: dict[str, str] | None = None) -> Path:
    fig = training_curves_figure(curves, highlight, labels)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the legend sits beside the axes
    _pyplot().close(fig)
    return path


def write_report_files(evaluation: Evaluation, out_dir: Path,
                       curves: dict[str, dict[str, list[float]]] | None = None, title: str = "",
                       highlight: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Path]:
    """Writes ``per_class_metrics.csv``, ``confusion_matrix.png``, ``reliability_diagram.png`` and (given
    per-trial curves) ``training_curves.png``."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"per_class": out_dir / "per_class_metrics.csv", "confusion": out_dir / "confusion_matrix.png"}
    evaluation.per_class.to_csv(files["per_class"], index=False)

    size = max(4.0, 0.9 * len(evaluation.classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(evaluation.confusion, cmap="Blues")
    ticks = range(len(evaluation.classes))
    ax.set_xticks(ticks, evaluation.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, evaluation.classes)
    for (row, col), count in np.ndenumerate(evaluation.confusion):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > evaluation.confusion.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} accuracy {evaluation.accuracy:.3f}".strip())
    fig.tight_layout()
    fig.savefig(files["confusion"], dpi=100)
    plt.close(fig)

    files["reliability"] = out_dir / "reliability_diagram.png"
    bins = calibration_bins(evaluation.probabilities, evaluation.labels)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    filled = bins[bins["count"] > 0]
    ax.bar(filled["low"], filled["accuracy"], width=filled["high"] - filled["low"], align="edge", alpha=0.6,
           edgecolor="black", label="accuracy in bin")
    ax.plot(filled["confidence"], filled["accuracy"], "o", color="black")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} ECE {evaluation.ece:.3f}".strip())
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(files["reliability"], dpi=100)
    plt.close(fig)

    if curves:
        files["curves"] = out_dir / "training_curves.png"
        write_training_curves(curves, files["curves"], highlight, labels)
    return files
