"""Milvus for llmpath: one code path for a Milvus Lite file (the default) and a Milvus server (a URI), the
collections an index build writes (schema, index type, build record), idempotent upserts, exact search in numpy
and the retrieval metrics (recall@k, MRR of the gold document).

Milvus Lite allows one process per .db: the indexing flow is its only writer, and a Bento serves its own copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from bentos.rag.connection import ResilientClient, is_server
from bentos.rag.runtime import OUTPUT_FIELDS, RECORD_PROPERTY, IndexMismatchError, read_record
from llmpath import faults, settings
from llmpath.families.index.config import IndexConfig

# Sizes of the VARCHAR fields; longer values are cut (text) or refused (ids) before they reach Milvus.
MAX_TEXT, MAX_META = 65535, 1024
DEFAULT_BUILD = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 64}}
DEFAULT_SEARCH = {"HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}

__all__ = ["IndexMismatchError", "read_record"]


def milvus_uri(cfg: IndexConfig) -> str:
    """The recipe's Milvus URI, else `LLMPATH_MILVUS_URI`, else the Milvus Lite file under the project home."""
    uri = cfg.uri or os.environ.get("LLMPATH_MILVUS_URI")
    if uri:
        return uri
    folder = settings.project_home() / "milvus"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "llmpath.db")


@contextlib.contextmanager
def connect(uri: str) -> Iterator:
    """A client for `uri` (a Lite .db path or a server URL, token from `MILVUS_TOKEN`) that reconnects and retries
    a call when the connection drops (`bentos/rag/connection.py`), closed afterwards. Milvus Lite's server lives
    in this process until it exits and holds the file's lock all that time: the next stage in this process reuses
    it, but another process cannot open the file meanwhile (one writer per Lite file; serving reads a copy)."""
    import logging

    if not is_server(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        # Milvus Lite serves gRPC in this process and logs a traceback for each call it does not implement
        # (the client probes AllocTimestamp, then falls back correctly): not an error worth showing.
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        client = ResilientClient(uri)
    except Exception as err:
        if "lock" in str(err).lower() or "open local milvus failed" in str(err).lower():
            raise RuntimeError(
                f"{uri}: another process has this Milvus Lite file open (one process per file). Stop it, "
                "or point index.uri / LLMPATH_MILVUS_URI at a Milvus server"
            ) from err
        raise
    try:
        yield client
    finally:
        client.close()


def collection_name(recipe_name: str, record: dict) -> str:
    """`<recipe>_<digest of the build record>`: a new corpus, embedder, chunking or index setting makes a new
    collection; the same build (a re-run, a resumed crash) writes into the same one."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_]", "_", recipe_name)
    if not re.match(r"[A-Za-z_]", stem):
        stem = "c_" + stem
    return f"{stem[:200]}_{digest}"


def build_params(cfg: IndexConfig) -> dict[str, int]:
    return DEFAULT_BUILD.get(cfg.type, {}) | dict(cfg.params)


def search_params(cfg: IndexConfig, k: int = 10) -> dict[str, int]:
    params = DEFAULT_SEARCH.get(cfg.type, {}) | dict(cfg.search_params)
    if cfg.type == "HNSW":
        params["ef"] = max(params["ef"], k)  # HNSW needs ef >= k
    return params


def create_collection(client, name: str, dim: int, cfg: IndexConfig, record: dict) -> bool:
    """Create the collection with its index and build record; True when it is new. An existing one must carry
    the same record (anything else means two builds disagree about what the name holds)."""
    from pymilvus import DataType, MilvusClient

    if client.has_collection(name):
        existing = read_record(client, name)
        if existing != record:
            raise IndexMismatchError(f"collection {name!r} exists with another build record: {existing}")
        return False
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_META)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_META)
    schema.add_field("title", DataType.VARCHAR, max_length=MAX_META)
    schema.add_field("position", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type=cfg.type, metric_type=cfg.metric, params=build_params(cfg))
    client.create_collection(name, schema=schema, index_params=index)
    client.alter_collection_properties(name, properties={RECORD_PROPERTY: json.dumps(record, sort_keys=True)})
    return True


def count(client, name: str) -> int:
    """Rows in the collection as a query sees them (upserted rows count once)."""
    result = client.query(name, filter="", output_fields=["count(*)"])
    return int(result[0]["count(*)"])


def upsert_chunks(
    client,
    name: str,
    chunks: Sequence[dict],
    vectors: np.ndarray,
    batch_size: int = 256,
    after_batch: Callable[[int], None] | None = None,
    progress: bool = False,
    flush: bool = True,
) -> int:
    """Write chunks with their vectors in batches of upserts: a chunk already there (same content hash) is
    replaced, so running this again, or again after a crash part-way, leaves each chunk exactly once."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    starts = range(0, len(chunks), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"upserting into {name}", unit="batch")
    written = 0
    for start in starts:
        rows = [
            {
                "id": c["id"],
                "vector": v.tolist(),
                "text": c["text"][:MAX_TEXT],
                "source": c["source"][:MAX_META],
                "doc_id": c["doc_id"][:MAX_META],
                "title": c["title"][:MAX_META],
                "position": int(c["position"]),
            }
            for c, v in zip(
                chunks[start : start + batch_size], vectors[start : start + batch_size], strict=True
            )
        ]
        client.upsert(name, rows)
        written += len(rows)
        if start == 0:
            faults.point("ingest")  # the fault test kills a run here: one batch written (kept), the rest not
        if after_batch is not None:
            after_batch(written)
    if flush:
        # Sealed segments are what the index covers: Milvus Lite searches unflushed rows by brute force, which
        # would make any index type look exact.
        client.flush(name)
    return written


def rows_of(client, name: str, batch_size: int = 1000) -> Iterator[dict]:
    """Every row of a collection, vectors included (to copy an index)."""
    import logging

    # Milvus Lite lacks the timestamp call the iterator tries first: pymilvus warns, then falls back correctly.
    logger = logging.getLogger("pymilvus")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        iterator = client.query_iterator(
            name, batch_size=batch_size, output_fields=["id", "vector", *OUTPUT_FIELDS]
        )
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()
    finally:
        logger.setLevel(level)


def copy_collection(src, dst, name: str, batch_size: int = 1000) -> int:
    """Copy a collection (schema, index settings, build record, rows) from one Milvus to another."""
    record = read_record(src, name)
    cfg = IndexConfig(type=record["index_type"], metric=record["metric"], params=record["index_params"])
    create_collection(dst, name, int(record["dim"]), cfg, record)
    batch: list[dict] = []
    for row in rows_of(src, name, batch_size):
        batch.append(row)
        if len(batch) >= batch_size:
            dst.upsert(name, batch)
            batch = []
    if batch:
        dst.upsert(name, batch)
    dst.flush(name)
    return count(dst, name)


# ---- exact search and metrics ----------------------------------------------------------------------------------


def exact_search(
    queries: np.ndarray, corpus: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in numpy: (indices [n, k], scores [n, k]) best first. COSINE/IP: higher is better (the
    vectors are unit length, so both are the dot product); L2: lower is better."""
    if metric == "L2":
        scores = (queries**2).sum(1)[:, None] - 2 * queries @ corpus.T + (corpus**2).sum(1)[None, :]
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = queries @ corpus.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def gold_rank(retrieved_docs: Sequence[str], gold: str) -> int | None:
    """1-based rank of the first retrieved chunk from the gold document, or None when it is not retrieved."""
    for rank, doc in enumerate(retrieved_docs, start=1):
        if doc == gold:
            return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """recall@k (share of questions whose gold document is in the top k) and MRR (mean of 1/rank, 0 when it
    is not retrieved at all)."""
    n = len(ranks)
    if n == 0:
        raise ValueError("no questions to evaluate retrieval on")
    out = {f"recall_at_{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return out
