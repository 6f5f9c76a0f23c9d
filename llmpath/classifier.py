"""Sequence-classification models in PyTorch: build from a base, predict in batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def load_for_classification(path: str | Path, labels: Sequence[str], seed: int | None = None):
    """Load weights (safetensors only) with a classification head for `labels`.

    With a seed the new head is initialised reproducibly, so "base" is exactly the model training starts from.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        use_safetensors=True,
        trust_remote_code=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model.eval(), tokenizer


def predict(
    model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64
) -> list[list[float]]:
    """Class probabilities per text (dynamic padding per batch)."""
    import torch

    probs: list[list[float]] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**batch).logits
            probs.extend(torch.softmax(logits.float(), dim=-1).tolist())
    return probs


def argmax(rows: Sequence[Sequence[float]]) -> list[int]:
    return [max(range(len(r)), key=r.__getitem__) for r in rows]
