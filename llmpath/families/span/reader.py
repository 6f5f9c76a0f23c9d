"""Span reading on the PyTorch side and for other kinds: training windows with their start/end targets, the
PyTorch model's best span per question (the reference the ONNX forms are checked against), and the extractive
reader a rag recipe answers with (`ask.reader: registry:NAME`: that qa model's champion ONNX form).

The window and span code itself is the Bento's (bentos/qa/runtime.py), so evaluation, parity and serving cut
and decode the same way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bentos.qa.runtime import OnnxReader, best_span, label_window, windows
from llmpath import tracking

CHAMPION = "champion"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
READER_FILE = "reader.json"  # beside an exported span model: the token window it was trained and checked with


def training_windows(tokenizer, rows: Sequence[dict], max_length: int, stride: int) -> dict:
    """Every window of every row's context (padded to the longest), with `start_positions`/`end_positions`:
    the first answer's first and last token, or 0 ([CLS]) in a window that does not hold all of it."""
    parts, starts, ends = [], [], []
    for row in rows:
        win = windows(tokenizer, row["question"], row["context"], max_length, stride)
        answer = row["answers"][0]
        char = int(row["answer_starts"][0])
        for w in range(len(win["input_ids"])):
            s, e = label_window(win["offsets"][w], win["in_context"][w], char, char + len(answer))
            starts.append(s)
            ends.append(e)
        parts.append(win)
    width = max(p["input_ids"].shape[1] for p in parts)
    out = {}
    for name in INPUTS:
        if name not in parts[0]:
            continue
        pad = tokenizer.pad_token_id if name == "input_ids" else 0
        out[name] = np.concatenate(
            [np.pad(p[name], ((0, 0), (0, width - p[name].shape[1])), constant_values=pad) for p in parts]
        )
    out["start_positions"] = np.array(starts, dtype=np.int64)
    out["end_positions"] = np.array(ends, dtype=np.int64)
    return out


def torch_logits(model, device=None):
    """A `(question, context) -> (start, end, windows)` function over a PyTorch span model, as OnnxReader has."""
    import torch

    def logits(tokenizer, question: str, context: str, max_length: int, stride: int):
        win = windows(tokenizer, question, context, max_length, stride)
        feed = {k: torch.from_numpy(win[k]).to(device or "cpu") for k in INPUTS if k in win}
        with torch.inference_mode():
            out = model(**feed)
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy(), win

    return logits


def predict_torch(
    model, tokenizer, rows: Sequence[dict], max_length: int, stride: int, max_answer_tokens: int, track=None
) -> list[dict]:
    """The PyTorch model's best span for each row: {id, answer, start, end, score} (character offsets)."""
    model.eval()
    logits = torch_logits(model, next(model.parameters()).device)
    out = []
    for row in track(rows) if track else rows:
        start, end, win = logits(tokenizer, row["question"], row["context"], max_length, stride)
        s, e, score = best_span(start, end, win["offsets"], win["in_context"], max_answer_tokens)
        out.append({"id": row["id"], "answer": row["context"][s:e], "start": s, "end": e, "score": score})
    return out


def predict_onnx(reader: OnnxReader, rows: Sequence[dict], track=None) -> list[dict]:
    """An ONNX form's answer for each row, as the Bento gives it."""
    out = []
    for row in track(rows) if track else rows:
        got = reader.answer(row["question"], row["context"])
        out.append({"id": row["id"], **got})
    return out


def span_agreement(a: Sequence[dict], b: Sequence[dict]) -> float:
    """Share of questions where two models chose the same character span."""
    if not a:
        return 1.0
    same = sum((x["start"], x["end"]) == (y["start"], y["end"]) for x, y in zip(a, b, strict=True))
    return same / len(a)


# ---- the extractive reader another kind answers with -------------------------------------------------------


@dataclass(frozen=True)
class RegistryReader:
    """A qa champion as a reader: its ONNX form, what identifies it, and the questions it was trained on (so a
    comparison on the same corpus can leave them out)."""

    reader: OnnxReader
    revision: str
    trained_questions: frozenset[str]


def registry_reader(source: str, stride: int = 128, max_answer_tokens: int = 30) -> RegistryReader:
    """`registry:NAME`: the deployable ONNX form of NAME's champion (with the token window it was checked
    with), what identifies it, and its training questions (its run's prepared `train` split)."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if not source.startswith("registry:"):
        raise ValueError(f"ask.reader {source}: expected registry:NAME (a qa recipe's registered model)")
    name = source.removeprefix("registry:")
    tracking.configure()
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        raise LookupError(f"ask.reader {source}: {name} has no champion; run its qa recipe first") from None
    tags = version.tags
    if "deployable.uri" not in tags:
        raise LookupError(f"ask.reader {source}: v{version.version} has no deployable ONNX form")
    folder = Path(tracking.download(tags["deployable.uri"]))
    config = folder / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    if not any(str(a).endswith("ForQuestionAnswering") for a in architectures):
        raise LookupError(f"ask.reader {source}: v{version.version} is not a span (extractive QA) model")
    settings = json.loads((folder / READER_FILE).read_text()) if (folder / READER_FILE).is_file() else {}
    reader = OnnxReader(
        folder,
        max_length=int(settings.get("max_length", 384)),
        stride=stride,
        max_answer_tokens=max_answer_tokens,
    )
    trained: frozenset[str] = frozenset()
    run_id = tags.get("run_id") or version.run_id
    if run_id:
        try:
            split = tracking.download(f"runs:/{run_id}/data/train.parquet")
            trained = frozenset(pd.read_parquet(split, columns=["question"])["question"].str.strip())
        except Exception as err:  # a record to compare against, not the reader: say so and go on
            print(f"ask.reader {source}: its training questions could not be read ({type(err).__name__})")
    revision = f"{name} v{version.version} ({tags.get('deployable.form', 'fp32')})"
    return RegistryReader(reader, revision, trained)


def read_passages(reader: OnnxReader, question: str, passages: Sequence[str]) -> dict:
    """The best-scoring span over the passages: {answer, score, passage, start, end}; an empty answer when
    there is no passage."""
    best = {"answer": "", "score": 0.0, "passage": -1, "start": 0, "end": 0}
    for i, text in enumerate(passages):
        if not text.strip():
            continue
        got = reader.answer(question, text)
        if got["answer"] and (best["passage"] < 0 or got["score"] > best["score"]):
            best = {**got, "passage": i}
    return best
