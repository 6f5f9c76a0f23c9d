"""ONNX Runtime text classifier: tokenizer + one InferenceSession. No Prefect, no MLflow, no torch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def find_onnx(folder: Path) -> Path:
    """The one ONNX file in an exported folder (optimum names the quantized one model_quantized.onnx)."""
    files = sorted(folder.glob("*.onnx"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: expected one .onnx file, found {[f.name for f in files]}")
    return files[0]


class OnnxTextClassifier:
    def __init__(self, folder: str | Path, max_length: int = 128, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(find_onnx(folder)), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        config = json.loads((folder / "config.json").read_text())
        id2label = config.get("id2label") or {}
        self.labels = [id2label.get(str(i), str(i)) for i in range(len(id2label))]
        self.max_length = max_length

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=True, return_tensors="np"
        )
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
        logits = self.session.run(None, feed)[0].astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=-1, keepdims=True)

    def predict_proba_batched(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        parts = [self.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))

    def classify(self, texts: Sequence[str]) -> list[dict]:
        probs = self.predict_proba(texts)
        best = probs.argmax(axis=-1)
        return [{"label": self.labels[i], "score": float(p[i])} for i, p in zip(best, probs, strict=True)]
