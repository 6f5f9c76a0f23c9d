"""ONNX Runtime causal LM with KV cache: token-by-token generation, greedy or sampled. No torch, no Prefect,
no MLflow: this is what the chat Bento runs (toward issue 4)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


class OnnxCausalLM:
    """An optimum export (`ORTModelForCausalLM`, `use_cache=True`): inputs `input_ids`, `attention_mask`,
    `position_ids`, `past_key_values.N.key/value`; outputs `logits`, `present.N.key/value`. Batch size 1."""

    def __init__(self, folder: str | Path, threads: int | None = None, file_name: str | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = folder / (file_name or "model.onnx")  # every exported form is a folder with a model.onnx
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ONNX model there (expected an llmpath chat export)")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.past_names = [i.name for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        if not self.past_names:
            raise ValueError(f"{path}: exported without KV cache (export with use_cache=True)")
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.past_names[0])
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.present_names = [name.replace("past_key_values.", "present.") for name in self.past_names]

    def _empty_past(self) -> dict[str, np.ndarray]:
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {name: empty for name in self.past_names}

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Next-token logits at every position of `ids` (one pass, empty cache): [len(ids), vocab]."""
        n = len(ids)
        feed = {
            "input_ids": np.asarray([list(ids)], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None, :],
        } | self._empty_past()
        return self.session.run(["logits"], feed)[0][0]

    def stream(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one at a time; stop at a stop id (not yielded) or after `max_new_tokens`.
        `temperature` 0 is greedy; otherwise sample from the top-`top_p` nucleus."""
        rng = np.random.default_rng(seed)
        past = self._empty_past()
        ids = np.asarray([list(prompt)], dtype=np.int64)
        seen = 0
        for _ in range(max_new_tokens):
            length = ids.shape[1]
            feed = {
                "input_ids": ids,
                "attention_mask": np.ones((1, seen + length), dtype=np.int64),
                "position_ids": np.arange(seen, seen + length, dtype=np.int64)[None, :],
            } | past
            outputs = self.session.run(["logits", *self.present_names], feed)
            seen += length
            past = dict(zip(self.past_names, outputs[1:], strict=True))
            token = pick(outputs[0][0, -1], temperature, top_p, rng)
            if token in stop_ids:
                return
            yield token
            ids = np.asarray([[token]], dtype=np.int64)


def pick(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Greedy when temperature is 0; else softmax(logits / temperature) restricted to the smallest set of
    tokens whose probability reaches `top_p`."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
    kept = probs[keep] / probs[keep].sum()
    return int(rng.choice(keep, p=kept))
