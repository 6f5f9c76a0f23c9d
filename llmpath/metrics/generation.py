"""Generation metrics: ROUGE-L through rouge-score with CJK-aware tokens, perplexity, token agreement of two
greedy generations, and the chart of exported forms the causal-LM parity gate logs."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

# ROUGE tokens: each CJK ideograph on its own (Chinese has no spaces), otherwise runs of other letters and
# digits, which stop at an ideograph ("2020年" is "2020", "年"). Kana and Hangul stay in runs.
_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ROUGE_TOKEN = re.compile(rf"[{_IDEOGRAPHS}]|[^\W_{_IDEOGRAPHS}]+")


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
