"""Building an index: the build record that names a collection, the upserts that fill it, and what its registry
version says about it (manifest and tags)."""

from __future__ import annotations

import json
import time

from llmpath import tracking
from llmpath.families.index import vectors
from llmpath.families.index.artifacts import load_vectors, read_table
from llmpath.results import Embeddings, Evaluation, IndexBuild, PreparedCorpus


def build_record(recipe, prepared: PreparedCorpus, embedded: Embeddings, chunking: dict) -> dict:
    """What a collection records about its build; equal records mean equal collections. `chunking`: the
    settings that decided the chunks (the kind's)."""
    cfg = recipe.index
    return {
        "embedder": embedded.embedder,
        "embedder_revision": embedded.revision,
        "embedder_backend": embedded.backend,
        "max_length": recipe.model.max_length,  # texts are cut there before embedding
        "dim": embedded.dim,
        "metric": cfg.metric,
        "corpus_fingerprint": prepared.corpus_fingerprint,
        "chunks_fingerprint": prepared.fingerprint,
        "chunking": chunking,
        "index_type": cfg.type,
        "index_params": vectors.build_params(cfg),
    }


def build_index(
    recipe, prepared: PreparedCorpus, embedded: Embeddings, run_id: str, chunking: dict
) -> IndexBuild:
    """Write the chunks into this build's collection (created with its record the first time). Upserts of
    content-hashed chunks make a second run a no-op in effect."""
    import mlflow

    record = build_record(recipe, prepared, embedded, chunking)
    name = vectors.collection_name(recipe.name, record)
    uri = vectors.milvus_uri(recipe.index)
    chunks = read_table(prepared, "chunks")
    chunk_vectors = load_vectors(embedded, "chunks")
    started = time.perf_counter()
    with vectors.connect(uri) as client:
        created = vectors.create_collection(
            client, name, embedded.dim, recipe.index, {"collection": name} | record
        )
        vectors.upsert_chunks(
            client, name, chunks, chunk_vectors, recipe.index.write_batch_size, progress=True
        )
        rows = vectors.count(client, name)
    seconds = time.perf_counter() - started
    if rows != len(chunks):
        raise RuntimeError(f"collection {name} holds {rows} rows after writing {len(chunks)} chunks")
    print(
        f"{'created' if created else 'updated'} collection {name} at {uri}: {rows} chunks in {seconds:.1f} s"
    )
    with tracking.use_run(run_id):
        mlflow.set_tags(
            {"index.collection": name, "index.uri": uri if vectors.is_server(uri) else "milvus-lite"}
        )
        mlflow.log_params(
            {"index.collection": name, "index.built_params": json.dumps(record["index_params"])}
        )
        mlflow.log_metrics(
            {
                "index.rows": rows,
                "index.seconds": seconds,
                "index.chunks_per_second": rows / max(seconds, 1e-9),
            }
        )
    return IndexBuild(
        uri=uri,
        collection=name,
        rows=rows,
        record={"collection": name} | record,
        created=created,
        embedder_uri=embedded.model_uri,
    )


def manifest(recipe, built: IndexBuild) -> dict:
    """`index/manifest.json`, the registry version's source: the build record, where it lives, its rows and
    the search settings it was evaluated with (serving uses them)."""
    return built.record | {
        "uri": built.uri if vectors.is_server(built.uri) else "milvus-lite",
        "rows": built.rows,
        "search_params": vectors.search_params(recipe.index),
    }


def registry_key(built: IndexBuild) -> str:
    """What identifies a collection in the registry: the same collection keeps its version."""
    return f"milvus:{built.uri}#{built.collection}"


def version_tags(
    recipe, built: IndexBuild, evals: dict[str, str], run_id: str, source: str
) -> dict[str, str]:
    """The registry version's tags: the collection, its build record, its deployable form and its scores."""
    record = built.record
    tags = {
        "model_uri": registry_key(built),
        "run_id": run_id,
        "kind": recipe.kind,
        "recipe": recipe.name,
        "collection": built.collection,
        "milvus_uri": built.uri,
        "embedder": record["embedder"],
        "embedder_revision": record["embedder_revision"],
        "embedder_backend": record["embedder_backend"],
        "dim": str(record["dim"]),
        "metric": record["metric"],
        "corpus_fingerprint": record["corpus_fingerprint"],
        "chunking": json.dumps(record["chunking"]),
        "index_type": record["index_type"],
        "index_params": json.dumps(record["index_params"]),
        "rows": str(built.rows),
        "deployable.form": "milvus-server" if vectors.is_server(built.uri) else "milvus-lite",
        "deployable.uri": source,
    }
    return tags | ({"embedder_uri": built.embedder_uri} if built.embedder_uri else {}) | evals


def eval_tags(evaluation: Evaluation) -> dict[str, str]:
    return {f"eval.{k}": f"{v:.6f}" for k, v in evaluation.metrics.items()}
