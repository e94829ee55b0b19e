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

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1}


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
                      table, confusion_matrix(labels, predicted, labels=indices), tuple(classes), probabilities)


def format_report(evaluation: Evaluation) -> str:
    lines = [f"accuracy {evaluation.accuracy:.4f}   macro F1 {evaluation.macro_f1:.4f}",
             evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report_files(evaluation: Evaluation, out_dir: Path, curves: dict[str, list[float]] | None = None,
                       title: str = "") -> dict[str, Path]:
    """Writes ``per_class_metrics.csv``, ``confusion_matrix.png`` and (given curves) ``training_curves.png``."""
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

    if curves:
        files["curves"] = out_dir / "training_curves.png"
        fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for name, values in curves.items():
            (loss_ax if name.endswith("loss") else acc_ax).plot(range(len(values)), values, label=name)
        for ax, label in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.legend()
        fig.tight_layout()
        fig.savefig(files["curves"], dpi=100)
        plt.close(fig)
    return files
