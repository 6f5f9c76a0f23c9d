"""Classification metrics: accuracy, macro-F1, the confusion matrix and its plot, agreement of two labelings."""

from __future__ import annotations

from collections.abc import Sequence


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> list[list[int]]:
    """Rows are true labels, columns are predictions."""
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    return matrix


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class F1 (F1 of a class with no support and no predictions is 0)."""
    if not y_true:
        raise ValueError("no rows to score")
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    correct = sum(matrix[i][i] for i in range(len(labels)))
    out = {"accuracy": correct / len(y_true)}
    f1s = []
    for i, name in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"f1_{name}"] = f1
        f1s.append(f1)
    out["macro_f1"] = sum(f1s) / len(f1s)
    return out


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of positions where two prediction lists agree."""
    if len(a) != len(b) or not a:
        raise ValueError("prediction lists must be non-empty and of equal length")
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def plot_confusion(matrix: list[list[int]], labels: Sequence[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.5), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.tight_layout()
    return fig
