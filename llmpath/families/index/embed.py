"""Embedding a prepared corpus: PyTorch, or the ONNX export checked against PyTorch before it embeds anything."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from bentos.rag.runtime import Embedder
from llmpath import progress, tracking
from llmpath.families.index.artifacts import read_table
from llmpath.results import Embeddings, GateError, PreparedCorpus
from llmpath.sources import resolve_model


class EmbedderParityError(GateError):
    """The ONNX embedder does not reproduce PyTorch's vectors within `index.min_cosine`."""


def export_embedder(model_dir: Path, out: Path) -> Path:
    """The encoder as ONNX (optimum feature extraction: `last_hidden_state`), tokenizer alongside; pooling
    stays in the runtime, shared with PyTorch."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    ORTModelForFeatureExtraction.from_pretrained(model_dir, export=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def cosine_parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Per-row cosine of two unit-length embedding sets: the worst and the mean."""
    cos = (reference * candidate).sum(1)
    return {"min": float(cos.min()), "mean": float(cos.mean())}


def checked_onnx_embedder(recipe, base_path: Path, probe: list[str]) -> tuple[Embedder, dict[str, float]]:
    """The ONNX export of the embedder, once every probe text's vector is within `index.min_cosine` of
    PyTorch's; raises EmbedderParityError otherwise."""
    cfg = recipe.index
    torch_embedder = Embedder(base_path, "torch", recipe.model.max_length, cfg.embed_batch_size)
    folder = export_embedder(base_path, tracking.scratch("embedder-onnx-"))
    embedder = Embedder(folder, "onnx", recipe.model.max_length, cfg.embed_batch_size)
    parity = cosine_parity(torch_embedder.encode(probe), embedder.encode(probe))
    print(f"ONNX embedder vs PyTorch on {len(probe)} texts: min cosine {parity['min']:.5f}")
    if parity["min"] < cfg.min_cosine:
        raise EmbedderParityError(
            f"ONNX embedder min cosine {parity['min']:.4f} < index.min_cosine {cfg.min_cosine}: "
            "set index.onnx: false to embed with PyTorch"
        )
    return embedder, {"embedder.onnx_min_cosine": parity["min"], "embedder.onnx_mean_cosine": parity["mean"]}


def encode_tracked(embedder: Embedder, texts: list[str], desc: str, before: int, total: int) -> np.ndarray:
    """`embedder.encode(texts)` in pieces of 8 batches, with a tqdm bar and a progress update after each
    (`before` of `total` texts were embedded already). The pieces are runs of the texts sorted by length,
    as `encode` sorts them, so every batch and vector is the one a single call makes."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    piece = embedder.batch_size * 8
    out: np.ndarray | None = None
    with tqdm(total=len(texts), desc=desc, unit="text") as bar:
        for start in range(0, len(order), piece):
            idx = order[start : start + piece]
            vectors = embedder.encode([texts[i] for i in idx])
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
            bar.update(len(idx))
            progress.update(before + start + len(idx), total, "texts")
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def embed(recipe, prepared: PreparedCorpus, run_id: str) -> Embeddings:
    """Embed every chunk and question. With `index.onnx`, export the embedder and check it against PyTorch
    (every probe text at cosine >= index.min_cosine) before it embeds anything."""
    import mlflow

    cfg, base = recipe.index, resolve_model(recipe.model.base, recipe.model.revision)
    chunks = [c["text"] for c in read_table(prepared, "chunks")]
    questions = [q["question"] for q in read_table(prepared, "questions")]
    if cfg.onnx:
        embedder, metrics = checked_onnx_embedder(
            recipe, base.path, (chunks[:48] + questions[:16]) or ["probe"]
        )
    else:
        embedder, metrics = Embedder(base.path, "torch", recipe.model.max_length, cfg.embed_batch_size), {}
    total = len(chunks) + len(questions)
    started = time.perf_counter()
    chunk_vectors = encode_tracked(embedder, chunks, "embedding chunks", 0, total)
    seconds = time.perf_counter() - started
    if questions:
        question_vectors = encode_tracked(embedder, questions, "embedding questions", len(chunks), total)
    else:
        question_vectors = np.zeros((0, chunk_vectors.shape[1]))
    metrics |= {"embed.seconds": seconds, "embed.chunks_per_second": len(chunks) / max(seconds, 1e-9)}
    out = tracking.scratch("vectors-")
    np.save(out / "chunks.npy", chunk_vectors.astype(np.float32))
    np.save(out / "questions.npy", question_vectors.astype(np.float32))
    model_uri = None
    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "vectors")
        if cfg.onnx:
            mlflow.log_artifacts(str(embedder.folder), "embedder/onnx")
            model_uri = tracking.artifact_uri(run_id, "embedder/onnx")
        mlflow.log_metrics(metrics)
        mlflow.log_params({"embedder.backend": embedder.backend, "embedder.dim": chunk_vectors.shape[1]})
    shutil.rmtree(out, ignore_errors=True)
    return Embeddings(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "vectors"),
        embedder=recipe.model.base,
        revision=base.revision,
        backend=embedder.backend,
        dim=int(chunk_vectors.shape[1]),
        model_uri=model_uri,
        metrics=metrics,
    )


def embed_key(recipe, prepared: PreparedCorpus) -> dict:
    """The recipe's slice that decides the vectors."""
    cfg = recipe.index
    return {
        "prepared": prepared.fingerprint,
        "model": recipe.model.model_dump(),
        "base": prepared.base_revision,
        "onnx": cfg.onnx,
        "min_cosine": cfg.min_cosine if cfg.onnx else None,
    }
