"""What both sides of retrieval share: the sentence embedder (mean pooling, L2-normalized, as
sentence-transformers does it; PyTorch or ONNX Runtime), the record a collection keeps of how it was built, the
check that a query side matches it, and search with metadata filters. The indexing flow and the rag Bento both
use this file, so a query is embedded exactly as the corpus was. No Prefect, no MLflow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RECORD_PROPERTY = "llmpath.record"  # collection property holding the build record (JSON)
FILTER_FIELDS = ("source", "doc_id", "title")  # metadata a search may filter on
OUTPUT_FIELDS = ["text", "source", "doc_id", "title", "position"]


class IndexMismatchError(ValueError):
    """The query side embeds differently from how the collection was built (other model, revision or size):
    its answers would be silently wrong, so it refuses."""


class Embedder:
    """Sentence embeddings from a BERT-style encoder folder. `backend` "onnx" reads `model.onnx` from the folder
    (an optimum feature-extraction export) and needs no torch; "torch" loads the safetensors weights."""

    def __init__(
        self,
        folder: str | Path,
        backend: str = "torch",
        max_length: int = 256,
        batch_size: int = 64,
        threads: int | None = None,
    ):
        from transformers import AutoTokenizer

        self.folder, self.backend = Path(folder), backend
        self.max_length, self.batch_size = max_length, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            path = self.folder / "model.onnx"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no ONNX embedder there (expected an optimum export)")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.inputs = {i.name for i in self.session.get_inputs()}
        elif backend == "torch":
            import torch
            from transformers import AutoModel

            self.device = "cuda" if torch.cuda.is_available() else "cpu"  # a GPU worker embeds on its GPU
            self.model = AutoModel.from_pretrained(self.folder, use_safetensors=True).eval().to(self.device)
        else:
            raise ValueError(f"unknown embedder backend {backend!r} (torch or onnx)")

    @property
    def dim(self) -> int:
        return int(self.encode(["dimension probe"]).shape[1])

    def _hidden(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.backend == "onnx":
            feed = {k: v.astype(np.int64) for k, v in batch.items() if k in self.inputs}
            return self.session.run(["last_hidden_state"], feed)[0]
        import torch

        with torch.no_grad():
            out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in batch.items()})
        return out.last_hidden_state.float().cpu().numpy()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """[len(texts), dim] float32, unit length. Texts are batched by length (less padding), order kept."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: np.ndarray | None = None
        starts = range(0, len(order), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for start in starts:
            idx = order[start : start + self.batch_size]
            batch = dict(
                self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="np",
                )
            )
            vectors = mean_pool(self._hidden(batch), batch["attention_mask"])
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        if out is None:
            return np.zeros((0, 0), dtype=np.float32)
        return out


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the token vectors the mask keeps, scaled to unit length."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    mean = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    return (mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def read_record(client, collection: str) -> dict:
    """The build record a collection carries (embedder, revision, dim, metric, corpus, chunking, index)."""
    properties = client.describe_collection(collection).get("properties") or {}
    raw = properties.get(RECORD_PROPERTY)
    if raw is None:
        raise IndexMismatchError(
            f"collection {collection!r} has no llmpath build record: it was not built by llmpath, so the "
            "embedder that wrote it is unknown"
        )
    return json.loads(raw)


def check_compatible(record: dict, embedder: str, revision: str, dim: int, collection: str = "") -> None:
    """Raise unless the query side embeds the way the collection was built."""
    wanted = {"embedder": embedder, "embedder_revision": revision, "dim": dim}
    wrong = [
        f"{key}: collection {record.get(key)!r}, query side {value!r}"
        for key, value in wanted.items()
        if str(record.get(key)) != str(value)
    ]
    if wrong:
        raise IndexMismatchError(
            f"collection {collection or record.get('collection')!r} was built with another embedder ("
            + "; ".join(wrong)
            + "). Query it with the embedder it was built with, or build a new index with this one."
        )


# The escapes both Milvus Lite's filter lexer and a Milvus server's grammar (Plan.g4) read back; every other
# character, non-ASCII and control characters included, goes in literally. (JSON's \uXXXX escapes are not
# Milvus syntax: Lite rejects them, so `Beyoncé` could not be filtered on. Lite also ignores templated
# `filter_params`, which is why values are quoted here rather than passed separately.)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """`value` as a double-quoted Milvus string literal that reads back as exactly `value`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a filter value is not valid Unicode text (a lone surrogate)") from None
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def filter_expression(filters: dict[str, str | int] | None) -> str:
    """A Milvus boolean expression from {field: value} equality filters on the known metadata fields."""
    parts = []
    for key, value in sorted((filters or {}).items()):
        if key not in FILTER_FIELDS:
            raise ValueError(f"cannot filter on {key!r}; filter fields: {', '.join(FILTER_FIELDS)}")
        parts.append(f"{key} == {quote(str(value))}")
    return " and ".join(parts)


def search(
    client,
    collection: str,
    vectors: np.ndarray,
    k: int,
    metric: str,
    search_params: dict | None = None,
    filters: dict[str, str | int] | None = None,
    dim: int | None = None,
) -> list[list[dict]]:
    """Top-k chunks per query vector: [{id, score, text, source, doc_id, title, position}], best first."""
    if dim is not None and vectors.shape[1] != dim:  # Milvus Lite's own error here is empty
        raise IndexMismatchError(
            f"query vectors have {vectors.shape[1]} dimensions; {collection!r} has {dim}"
        )
    hits = client.search(
        collection,
        data=vectors.tolist(),
        limit=k,
        output_fields=OUTPUT_FIELDS,
        search_params={"metric_type": metric, "params": dict(search_params or {})},
        filter=filter_expression(filters),
    )
    return [[{"id": h["id"], "score": float(h["distance"])} | dict(h["entity"]) for h in row] for row in hits]


def fill_prompt(template: str, question: str, passages: Sequence[str]) -> str:
    """The recipe's template with the numbered passages as {context} and the question as {question}."""
    context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1))
    return template.replace("{context}", context).replace("{question}", question)
