"""Evaluation metrics (classification, ROUGE-L, SQuAD EM/F1, perplexity) and their plots."""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Sequence

# ROUGE tokens: each CJK ideograph on its own (Chinese has no spaces), otherwise runs of other letters and
# digits, which stop at an ideograph ("2020年" is "2020", "年"). Kana and Hangul stay in runs.
_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ROUGE_TOKEN = re.compile(rf"[{_IDEOGRAPHS}]|[^\W_{_IDEOGRAPHS}]+")


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


def plot_loss(steps: Sequence[int], losses: Sequence[float], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    ax.plot(steps, losses, alpha=0.3, label="per step")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, label=f"mean of {window}")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased word tokens, with every CJK character as a token of its own."""
    return _ROUGE_TOKEN.findall(text.lower())


class _CjkTokenizer:
    """`rouge_tokens` as a rouge-score tokenizer (rouge-score's own drops every non-ASCII character)."""

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


@functools.cache
def _rouge_l_scorer():
    from rouge_score import rouge_scorer  # imports nltk: seconds, so only when a chat model is scored

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CjkTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of one answer against one reference (rouge-score's LCS over `rouge_tokens`).

    Two texts without a single token score 1.0 (they are the same); rouge-score gives 0 to any empty side.
    """
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    return _rouge_l_scorer().score(reference, prediction)["rougeL"].fmeasure


def perplexity(mean_loss: float) -> float:
    """exp of the mean token loss (capped so a diverged model reports a large number, not an overflow)."""
    return math.exp(min(mean_loss, 50.0))


def token_agreement(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> float:
    """Share of positions where two greedy generations pick the same token, over the reference's length
    (a candidate that stops early or runs on counts the missing or extra positions as disagreements)."""
    agree = total = 0
    for ref, cand in zip(reference, candidate, strict=True):
        total += max(len(ref), len(cand))
        agree += sum(1 for x, y in zip(ref, cand, strict=False) if x == y)
    return agree / total if total else 1.0


def plot_forms(scores: dict[str, dict[str, float]], floor: float):
    """Exported forms side by side: greedy top-1 agreement with PyTorch (and the floor) and decoding speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.bar(names, [scores[n]["top1_agreement"] for n in names], color="#4c72b0")
    left.axhline(floor, color="#c44e52", linestyle="--", label=f"floor {floor}")
    left.set_ylim(0, 1.05)
    left.set_title("top-1 agreement with PyTorch")
    left.legend(loc="lower right")
    right.bar(names, [scores[n]["tokens_per_second"] for n in names], color="#55a868")
    right.set_title("decoding tokens/s")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


# SQuAD v1.1's evaluation: ASCII punctuation is deleted (so "U.S." is "us"), then the English articles.
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's answer normalization: lower case, punctuation deleted, articles removed, single spaces."""
    text = text.lower().translate(_DROP_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals any normalized reference."""
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(r) for r in references))


def _pair_f1(guess: list[str], truth: list[str]) -> float:
    """Token F1 of two normalized answers as bags of words; two empty answers agree (SQuAD v2.0's rule)."""
    if not guess or not truth:
        return float(guess == truth)
    common = sum((Counter(guess) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(guess), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1 against the best-matching reference (0.0 when there is no reference)."""
    guess = normalize_answer(prediction).split()
    return max((_pair_f1(guess, normalize_answer(r).split()) for r in references), default=0.0)
