"""Retrieval evaluation, the gate's input: recall@1/5/10 and MRR of the gold paragraph through the Milvus index,
and the same by exact search in numpy over the same vectors, so the index's own loss is known."""

from __future__ import annotations

import time

import numpy as np

from bentos.rag.runtime import check_compatible, read_record, search
from llmpath import tracking
from llmpath.families.index import vectors
from llmpath.families.index.artifacts import load_vectors, read_table
from llmpath.results import Embeddings, Evaluation, IndexBuild, PreparedCorpus

K = 10  # retrieval is evaluated at 1, 5 and 10
BATCH = 64  # questions per search call


def search_index(built: IndexBuild, embedded: Embeddings, q_vectors: np.ndarray, cfg) -> tuple[list, list]:
    """The top K hits of every question through the collection (its record checked against the query side
    first), and the search time per query of each batch in ms."""
    params = vectors.search_params(cfg, K)
    latencies, found = [], []
    with vectors.connect(built.uri) as client:
        record = read_record(client, built.collection)
        client.load_collection(built.collection)
        check_compatible(record, embedded.embedder, embedded.revision, embedded.dim, built.collection)
        for start in range(0, len(q_vectors), BATCH):
            batch = q_vectors[start : start + BATCH]
            t0 = time.perf_counter()
            found += search(client, built.collection, batch, K, cfg.metric, params, dim=record["dim"])
            latencies.append((time.perf_counter() - t0) * 1000 / len(batch))
    return found, latencies


def evaluate_retrieval(
    recipe, prepared: PreparedCorpus, embedded: Embeddings, built: IndexBuild, run_id: str
) -> Evaluation:
    """recall@1/5/10 and MRR of the gold paragraph through the Milvus index, and the same by exact search in
    numpy over the same vectors, so the index's recall ratio is known. The query side is checked against the
    collection's record first."""
    import mlflow

    questions = read_table(prepared, "questions")
    if not questions:
        raise ValueError(
            "the corpus has no evaluation questions: add a SQuAD source with questions: true "
            "(retrieval is gated on recall@5)"
        )
    chunks = read_table(prepared, "chunks")
    q_vectors, c_vectors = load_vectors(embedded, "questions"), load_vectors(embedded, "chunks")
    cfg = recipe.index
    found, latencies = search_index(built, embedded, q_vectors, cfg)
    exact, _ = vectors.exact_search(q_vectors, c_vectors, K, cfg.metric)
    index_ranks = [
        vectors.gold_rank([h["doc_id"] for h in hits], q["doc_id"])
        for hits, q in zip(found, questions, strict=True)
    ]
    exact_ranks = [
        vectors.gold_rank([chunks[i]["doc_id"] for i in row], q["doc_id"])
        for row, q in zip(exact, questions, strict=True)
    ]
    by_index = vectors.retrieval_metrics(index_ranks)
    by_exact = vectors.retrieval_metrics(exact_ranks)
    overlap = np.mean(  # share of the exact top-k that the index also returned
        [
            len({h["id"] for h in hits} & {chunks[i]["id"] for i in row}) / len(row)
            for hits, row in zip(found, exact, strict=True)
        ]
    )
    metrics = by_index | {f"exact.{k}": v for k, v in by_exact.items()}
    metrics |= {
        "recall_ratio_at_10": by_index["recall_at_10"] / by_exact["recall_at_10"]
        if by_exact["recall_at_10"]
        else 1.0,
        "overlap_at_10": float(overlap),
        "search_ms_per_query": float(np.mean(latencies)),
        "questions": float(len(questions)),
    }
    table = {
        "qid": [q["qid"] for q in questions],
        "question": [q["question"] for q in questions],
        "gold_doc": [q["doc_id"] for q in questions],
        "index_rank": [r or 0 for r in index_ranks],
        "exact_rank": [r or 0 for r in exact_ranks],
        "top_chunk": [hits[0]["text"][:200] if hits else "" for hits in found],
    }
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"retrieval.{k}": v for k, v in metrics.items()})
        mlflow.log_table(table, "eval/retrieval.json")
        tracking.log_figure(plot_recall(by_index, by_exact, cfg.type), "eval/recall_at_k.png")
    print(
        f"retrieval on {len(questions)} questions: recall@1/5/10 {by_index['recall_at_1']:.3f}/"
        f"{by_index['recall_at_5']:.3f}/{by_index['recall_at_10']:.3f} MRR {by_index['mrr']:.3f} "
        f"(exact search: {by_exact['recall_at_5']:.3f} at 5; ratio at 10 {metrics['recall_ratio_at_10']:.3f})"
    )
    return Evaluation(
        name="index", metrics=metrics, predictions_uri=tracking.artifact_uri(run_id, "eval/retrieval.json")
    )


def plot_recall(by_index: dict[str, float], by_exact: dict[str, float], index_type: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [1, 5, 10]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [by_exact[f"recall_at_{k}"] for k in ks], "o-", label="exact (numpy)")
    ax.plot(ks, [by_index[f"recall_at_{k}"] for k in ks], "s--", label=f"Milvus {index_type}")
    ax.set(xlabel="k", ylabel="recall@k of the gold paragraph", ylim=(0, 1.02), xticks=ks)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
