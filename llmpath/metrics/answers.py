"""Answers against references, as SQuAD v1.1's evaluation scores them: exact match and token F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

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
