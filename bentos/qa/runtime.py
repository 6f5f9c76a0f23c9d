"""Extractive QA reading (numpy + a fast tokenizer; no torch, no Prefect, no MLflow): a question and a context
cut into overlapping windows (stride), each token's character offsets kept, the best span over all windows
(start <= end, at most `max_answer_tokens`, inside the context), and an ONNX Runtime reader on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def windows(tokenizer, question: str, context: str, max_length: int, stride: int) -> dict:
    """The question paired with the context, the context cut into windows of `max_length` tokens that overlap
    by `stride` tokens; with each token's (start, end) characters in the context and a mask of context tokens."""
    q = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    room = max_length // 2  # a question longer than half the window is cut, so the context always has room
    if len(q["input_ids"]) > room:
        question = question[: q["offset_mapping"][room - 1][1]]
    free = max_length - min(len(q["input_ids"]), room) - 3  # [CLS] question [SEP] context [SEP]
    stride = max(0, min(stride, free // 2))
    enc = tokenizer(
        [question],
        [context],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="longest",
    )
    n = len(enc["input_ids"])
    in_context = np.array(
        [[sid == 1 for sid in enc.sequence_ids(i)] for i in range(n)], dtype=bool
    )  # pairs: 0 question, 1 context, None special/padding
    out = {k: np.array(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}
    if "token_type_ids" in enc:
        out["token_type_ids"] = np.array(enc["token_type_ids"], dtype=np.int64)
    out["offsets"] = np.array(enc["offset_mapping"], dtype=np.int64)
    out["in_context"] = in_context
    return out


def label_window(offsets: np.ndarray, in_context: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """Training targets of one window for the answer at characters [start, end): the first and last token that
    cover it, or (0, 0) (the [CLS] position) when the window does not hold the whole answer."""
    idx = np.flatnonzero(in_context)
    if not len(idx) or offsets[idx[0]][0] > start or offsets[idx[-1]][1] < end:
        return 0, 0
    first = next(i for i in idx if offsets[i][1] > start)
    last = next(i for i in idx[::-1] if offsets[i][0] < end)
    return int(first), int(last)


def best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
    in_context: np.ndarray,
    max_answer_tokens: int,
) -> tuple[int, int, float]:
    """Over every window (rows), the context span with the highest start + end logit, start <= end and at most
    `max_answer_tokens` long: (start char, end char, softmax-product score within its window)."""
    best = (0, 0, -np.inf, 0.0)
    for w in range(start_logits.shape[0]):
        s = np.where(in_context[w], start_logits[w], -np.inf)
        e = np.where(in_context[w], end_logits[w], -np.inf)
        total = s[:, None] + e[None, :]
        n = len(s)
        ok = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), max_answer_tokens)
        total = np.where(ok, total, -np.inf)
        i, j = np.unravel_index(int(np.argmax(total)), total.shape)
        if np.isfinite(total[i, j]) and total[i, j] > best[2]:
            ps = np.exp(start_logits[w] - start_logits[w].max())
            pe = np.exp(end_logits[w] - end_logits[w].max())
            score = float(ps[i] / ps.sum() * pe[j] / pe.sum())
            best = (int(offsets[w][i][0]), int(offsets[w][j][1]), float(total[i, j]), score)
    return best[0], best[1], best[3]


class OnnxReader:
    """The exported span model (model.onnx + tokenizer) answering a question from a context."""

    def __init__(
        self, folder: Path | str, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 30
    ):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        model = next(folder.glob("*.onnx"))
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.max_length, self.stride, self.max_answer_tokens = max_length, stride, max_answer_tokens

    def logits(self, question: str, context: str) -> tuple[np.ndarray, np.ndarray, dict]:
        win = windows(self.tokenizer, question, context, self.max_length, self.stride)
        feed = {k: win[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.inputs}
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return start, end, win

    def answer(self, question: str, context: str) -> dict:
        start, end, win = self.logits(question, context)
        s, e, score = best_span(start, end, win["offsets"], win["in_context"], self.max_answer_tokens)
        return {"answer": context[s:e], "score": score, "start": s, "end": e}
