"""Milvus Lite retrieval cost and quality as the corpus grows: FLAT vs IVF_FLAT vs HNSW vs AUTOINDEX, in one run.

Usage: python bench/retrieval.py [--sizes 1,4,16] [--seed 0] [--out bench/results]
Needs LLMPATH_DATA_DIR (squad-v1.1-subset/, llamafactory-demo/, alpaca/, sst2/).
Writes bench/results/retrieval.{json,png}; BENCHMARKS.md quotes the table this prints.

1x is the SQuAD subset (its paragraphs, chunked as the rag recipes do, and its questions with their gold
paragraph). Nx adds distractor chunks (C4 demo texts, Alpaca outputs; SST-2 sentences only if those run out),
chosen by a seeded shuffle, until the corpus holds about N times the SQuAD chunk count; the questions stay SQuAD's.
Every chunk and question is embedded once (PyTorch MiniLM). Per size and index type: a new collection in a
temporary Milvus Lite file; write time (upserts + count), then flush time (seals the segment and builds the
index: until then Milvus Lite searches the unindexed growing segment by brute force, timed on the first
100 questions); build = write + flush. Then single-query search latency at k=10 over every question, recall@10 /
MRR of the gold paragraph from Milvus and from exact numpy search, and overlap@10 with the exact top 10.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)
EMBEDDER = "packaged:all-minilm-l6-v2"
INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX")
K = 10
METRIC = "COSINE"
GROWING_QUERIES = 100  # questions also timed before the flush


def corpus_config(path: str, fmt: str):
    from llmpath.kinds.rag.recipe import CorpusConfig, CorpusSource

    return CorpusConfig(
        sources=[CorpusSource(path=path, format=fmt, text_field="text")],
        chunking="paragraph",
        chunk_tokens=256,
        chunk_overlap=32,
    )


def load_chunks(tokenizer, seed: int, max_size: int, max_questions: int | None):
    """SQuAD chunks and questions, and a seeded shuffle of distractor chunks (enough for `max_size`x)."""
    from llmpath.kinds.rag.chunking import chunk_corpus
    from llmpath.kinds.rag.corpus import Document, read_corpus

    squad_cfg = corpus_config("squad-v1.1-subset/dev-v1.1.json", "squad")
    squad = read_corpus(squad_cfg)
    squad_chunks = chunk_corpus(squad.documents, squad_cfg, tokenizer)
    questions = squad.questions[:max_questions]
    needed = len(squad_chunks) * max_size - len(squad_chunks)

    c4_cfg = corpus_config("llamafactory-demo/c4_demo.jsonl", "jsonl")
    pool = chunk_corpus(read_corpus(c4_cfg).documents, squad_cfg, tokenizer)
    root = settings.data_root()
    for rel in ("llamafactory-demo/alpaca_en_demo.json", "alpaca/alpaca_200.json"):
        rows = json.loads((root / rel).read_text(encoding="utf-8"))
        name = Path(rel).name
        docs = [
            Document(f"{name}#{i}", r["output"].strip(), name, r.get("instruction", "")[:200])
            for i, r in enumerate(rows)
            if r.get("output", "").strip()
        ]
        pool += chunk_corpus(docs, squad_cfg, tokenizer)
    if len(pool) < needed:  # last resort: SST-2 sentences (short, but text)
        lines = (root / "sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:]
        docs = [Document(f"train.tsv#{i}", line.split("\t")[0], "train.tsv") for i, line in enumerate(lines)]
        pool += chunk_corpus(docs, squad_cfg, tokenizer)[: needed - len(pool) + 100]
    seen = {c.id for c in squad_chunks}
    pool = [c for c in pool if not (c.id in seen or seen.add(c.id))]
    random.Random(seed).shuffle(pool)
    if len(pool) < needed:
        raise SystemExit(f"only {len(pool)} distractor chunks; {needed} needed for {max_size}x")
    return squad_chunks, pool[:needed], questions


def index_config(kind: str, n: int):
    from llmpath.families.index.config import IndexConfig

    if kind == "IVF_FLAT":
        nlist = max(4, int(math.sqrt(n)))
        return IndexConfig(type=kind, metric=METRIC, params={"nlist": nlist}, search_params={"nprobe": 16})
    if kind == "HNSW":
        return IndexConfig(
            type=kind, metric=METRIC, params={"M": 16, "efConstruction": 200}, search_params={"ef": 64}
        )
    return IndexConfig(type=kind, metric=METRIC)


def measure(client, kind, chunks, vectors, q_vectors, gold, exact_ids, exact_metrics, record):
    """Build one collection, time it and its single-query searches, score it against the gold and exact."""
    from bentos.rag.runtime import search
    from llmpath.families.index import vectors as vec

    n = len(chunks)
    cfg = index_config(kind, n)
    name = f"bench_{kind.lower()}_{n}"
    rows = [
        {
            "id": c.id,
            "text": c.text,
            "source": c.source,
            "doc_id": c.doc_id,
            "title": c.title,
            "position": c.position,
        }
        for c in chunks
    ]
    vec.create_collection(client, name, vectors.shape[1], cfg, record | {"index_type": kind})
    start = time.perf_counter()
    vec.upsert_chunks(client, name, rows, vectors, batch_size=256, flush=False)
    stored = vec.count(client, name)
    write_s = time.perf_counter() - start
    if stored != n:
        raise RuntimeError(f"{name}: {stored} rows stored, {n} written")
    params = vec.search_params(cfg, K)
    dim = vectors.shape[1]
    search(client, name, q_vectors[:1], K, METRIC, params, dim=dim)  # warm-up
    growing_ms, growing_overlap = [], []
    for i in range(min(GROWING_QUERIES, len(q_vectors))):  # unflushed rows: the growing segment
        t0 = time.perf_counter()
        hits = search(client, name, q_vectors[i : i + 1], K, METRIC, params, dim=dim)[0]
        growing_ms.append((time.perf_counter() - t0) * 1000)
        growing_overlap.append(len({h["id"] for h in hits} & set(exact_ids[i])) / K)
    start = time.perf_counter()
    client.flush(name)  # seals the segment: only now is the index type's own index built and searched
    vec.count(client, name)
    flush_s = time.perf_counter() - start
    search(client, name, q_vectors[:1], K, METRIC, params, dim=dim)  # warm-up
    ms, ranks, overlaps = [], [], []
    for i in range(len(q_vectors)):
        t0 = time.perf_counter()
        hits = search(client, name, q_vectors[i : i + 1], K, METRIC, params, dim=dim)[0]
        ms.append((time.perf_counter() - t0) * 1000)
        ranks.append(vec.gold_rank([h["doc_id"] for h in hits], gold[i]))
        overlaps.append(len({h["id"] for h in hits} & set(exact_ids[i])) / K)
    client.drop_collection(name)
    metrics = vec.retrieval_metrics(ranks)
    return {
        "index": kind,
        "chunks": n,
        "build_params": vec.build_params(cfg),
        "search_params": params,
        "write_s": write_s,
        "flush_s": flush_s,
        "build_s": write_s + flush_s,
        "build_chunks_per_s": n / (write_s + flush_s),
        "growing_search_p50_ms": float(np.percentile(growing_ms, 50)),
        "growing_overlap_at_10": float(np.mean(growing_overlap)),
        "search_p50_ms": float(np.percentile(ms, 50)),
        "search_p99_ms": float(np.percentile(ms, 99)),
        "search_mean_ms": float(np.mean(ms)),
        "recall_at_10": metrics["recall_at_10"],
        "recall_at_1": metrics["recall_at_1"],
        "mrr": metrics["mrr"],
        "exact_recall_at_10": exact_metrics["recall_at_10"],
        "exact_mrr": exact_metrics["mrr"],
        "recall_ratio": metrics["recall_at_10"] / exact_metrics["recall_at_10"],
        "mrr_ratio": metrics["mrr"] / exact_metrics["mrr"],
        "overlap_at_10": float(np.mean(overlaps)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,4,16", help="corpus sizes as multiples of the SQuAD chunks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the distractor selection")
    parser.add_argument("--max-questions", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from bentos.rag.runtime import Embedder
    from llmpath.families.index import vectors as vec
    from llmpath.sources import resolve_model

    model = resolve_model(EMBEDDER)
    embedder = Embedder(model.path, "torch", max_length=256, batch_size=64)
    squad_chunks, distractors, questions = load_chunks(
        embedder.tokenizer, args.seed, max(sizes), args.max_questions
    )
    all_chunks = squad_chunks + distractors
    embedder.encode(["warm-up"])
    start = time.perf_counter()
    chunk_vectors = embedder.encode([c.text for c in all_chunks])
    embed_s = time.perf_counter() - start
    q_vectors = embedder.encode([q.question for q in questions])
    gold = [q.doc_id for q in questions]
    print(
        f"{len(squad_chunks)} SQuAD chunks + {len(distractors)} distractors, {len(questions)} questions; "
        f"embedded {len(all_chunks)} chunks in {embed_s:.1f} s ({len(all_chunks) / embed_s:.1f} chunks/s)",
        flush=True,
    )
    record = {
        "embedder": EMBEDDER,
        "embedder_revision": model.revision,
        "dim": int(chunk_vectors.shape[1]),
        "metric": METRIC,
        "bench": "retrieval",
    }

    results, exact = [], {}
    tmp = tempfile.mkdtemp(prefix="llmpath-bench-retrieval-")
    try:
        with vec.connect(str(Path(tmp) / "bench.db")) as client:
            for size in sizes:
                n = len(squad_chunks) * size
                chunks, vectors = all_chunks[:n], chunk_vectors[:n]
                order, _ = vec.exact_search(q_vectors, vectors, K, METRIC)
                exact_ids = [[chunks[j].id for j in row] for row in order]
                exact_ranks = [
                    vec.gold_rank([chunks[j].doc_id for j in row], g)
                    for row, g in zip(order, gold, strict=True)
                ]
                exact[size] = vec.retrieval_metrics(exact_ranks)
                for kind in INDEX_TYPES:
                    r = measure(
                        client, kind, chunks, vectors, q_vectors, gold, exact_ids, exact[size], record
                    )
                    r["size"] = size
                    results.append(r)
                    print(
                        f"{size}x ({n} chunks) {kind}: build {r['build_s']:.2f} s, p50 {r['search_p50_ms']:.2f} ms, "
                        f"recall@10 {r['recall_at_10']:.3f} (exact {r['exact_recall_at_10']:.3f})",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = {r["index"]: r for r in results if r["size"] == min(sizes)}
    for r in results:
        r["build_vs_smallest"] = r["build_s"] / base[r["index"]]["build_s"]
        r["p50_vs_smallest"] = r["search_p50_ms"] / base[r["index"]]["search_p50_ms"]
    report = {
        "command": "python bench/retrieval.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            **{p: metadata.version(p) for p in ("pymilvus", "milvus-lite", "torch", "numpy")},
        },
        "embedder": {
            "model": EMBEDDER,
            "revision": model.revision,
            "backend": "torch",
            "max_length": 256,
            "batch_size": 64,
            "chunks": len(all_chunks),
            "seconds": embed_s,
            "chunks_per_s": len(all_chunks) / embed_s,
        },
        "corpus": {
            "squad_chunks": len(squad_chunks),
            "distractor_chunks": len(distractors),
            "distractor_sources": sorted({c.source for c in distractors}),
            "questions": len(questions),
            "seed": args.seed,
            "chunking": {"chunking": "paragraph", "chunk_tokens": 256, "chunk_overlap": 32},
        },
        "k": K,
        "metric": METRIC,
        "exact": {str(s): m for s, m in exact.items()},
        "results": results,
    }
    write_outputs(report, args.out)
    return 0


def write_outputs(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(report, indent=2))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    for kind in INDEX_TYPES:
        rows = [r for r in results if r["index"] == kind]
        x = [r["chunks"] for r in rows]
        axes[0].plot(x, [r["build_s"] for r in rows], marker="o", label=kind)
        axes[1].plot(x, [r["search_p50_ms"] for r in rows], marker="o", label=kind)
    for ax, title in zip(
        axes, ("build (upserts + count + flush), s", "search p50, ms (1 query, k=10)"), strict=True
    ):
        ax.set_xscale("log")
        ax.set_xlabel("corpus size (chunks)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "retrieval_cost.png")

    emb = report["embedder"]
    lines = [
        f"Embedder {emb['model']} (PyTorch, batch {emb['batch_size']}): {emb['chunks']} chunks in "
        f"{emb['seconds']:.1f} s = {emb['chunks_per_s']:.1f} chunks/s. {report['corpus']['questions']} SQuAD "
        f"questions, k={report['k']}, {report['metric']}; Milvus Lite {report['machine']['milvus-lite']}, "
        f"pymilvus {report['machine']['pymilvus']}, {report['machine']['cpu_count']} CPUs.",
        "",
        "| size | chunks | index | write s | flush s | build s | build chunks/s | build vs 1x | search p50 ms "
        "| p99 ms | p50 vs 1x | unflushed p50 ms | recall@10 | exact recall@10 | recall ratio | MRR | exact MRR "
        "| overlap@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']}x | {r['chunks']} | {r['index']} | {r['write_s']:.2f} | {r['flush_s']:.2f} "
            f"| {r['build_s']:.2f} | {r['build_chunks_per_s']:.0f} "
            f"| {r['build_vs_smallest']:.2f}x | {r['search_p50_ms']:.2f} | {r['search_p99_ms']:.2f} "
            f"| {r['p50_vs_smallest']:.2f}x | {r['growing_search_p50_ms']:.2f} | {r['recall_at_10']:.3f} | {r['exact_recall_at_10']:.3f} "
            f"| {r['recall_ratio']:.3f} | {r['mrr']:.3f} | {r['exact_mrr']:.3f} | {r['overlap_at_10']:.3f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
