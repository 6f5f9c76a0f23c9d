"""The rag kind's stages: corpus -> chunks -> embeddings -> a Milvus collection -> retrieval evaluation (index
and exact search side by side) -> registry version and the `champion` gate on recall@5 -> answers from the
chat model with and without retrieval -> the rag Bento (packaged by `tasks.package`) -> `champion` moves last.

Stages hand over MLflow references; the only live state is the Milvus collection, which every writer reaches
through upserts of content-hashed chunks, so running a stage again never duplicates a row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from bentos.rag.runtime import Embedder, check_compatible, fill_prompt, read_record, search
from llmpath import settings, tracking, vectors
from llmpath.config import Recipe
from llmpath.corpus import as_rows, chunk_corpus, chunking_settings, read_corpus
from llmpath.data import ValidationReport, write_issues_csv
from llmpath.locks import registry_lock
from llmpath.metrics import exact_match, token_f1
from llmpath.promotion import decide_floor
from llmpath.sources import resolve_model
from tasks.data import file_digest
from tasks.publish import publish_markdown
from tasks.registry import (
    CHAMPION,
    _client,
    alias_version,
    champion_of,
    kept_as_champion,
    record_decision,
    register_version,
)
from tasks.results import (
    Embeddings,
    Evaluation,
    GateDecision,
    IndexBuild,
    PreparedCorpus,
    Registration,
)
from tasks.stages import GateError, stage

K = 10  # retrieval is evaluated at 1, 5 and 10


class EmbedderParityError(GateError):
    """The ONNX embedder does not reproduce PyTorch's vectors within `index.min_cosine`."""


# ---------------------------------------------------------------------------------------------- corpus
def check_corpus(recipe: Recipe):
    """Read and validate the sources and cut the documents into chunks with the embedder's tokenizer (no
    embedding): shared by the stage and `llmpath validate`. Returns corpus, chunks, base and a report."""
    from transformers import AutoTokenizer

    cfg = recipe.corpus
    corpus = read_corpus(cfg)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    chunks = chunk_corpus(corpus.documents, cfg, AutoTokenizer.from_pretrained(base.path))
    lengths = [len(c.text) for c in chunks]
    report = {
        "documents": len(corpus.documents),
        "chunks": len(chunks),
        "questions": len(corpus.questions),
        "skipped": len(corpus.issues),
        "chunk_chars_p50": float(np.percentile(lengths, 50)),
        "chunk_chars_max": max(lengths),
    } | chunking_settings(cfg)
    markdown = "# Corpus report\n\n| what | value |\n|---|---|\n" + "".join(
        f"| {k} | {v} |\n" for k, v in report.items()
    )
    if corpus.issues:
        markdown += "\nSkipped (first 10):\n\n" + "".join(f"- {i}\n" for i in corpus.issues[:10])
    return corpus, chunks, base, markdown


def prepare(recipe: Recipe, run_id: str) -> PreparedCorpus:
    """Check the corpus (see `check_corpus`) and log its chunks, questions and report to the run."""
    import mlflow
    import pandas as pd

    corpus, chunks, base, markdown = check_corpus(recipe)
    out = tracking.scratch("corpus-")
    chunk_rows = as_rows(chunks)
    question_rows = [q | {"answers": list(q["answers"])} for q in as_rows(corpus.questions)]
    pd.DataFrame(chunk_rows).to_parquet(out / "chunks.parquet", index=False)
    pd.DataFrame(question_rows, columns=["qid", "question", "answers", "doc_id"]).to_parquet(
        out / "questions.parquet", index=False
    )
    write_issues_csv([ValidationReport("corpus", issues=corpus.issues)], out / "row_issues.csv")
    (out / "report.md").write_text(markdown)
    digest = hashlib.sha256(json.dumps([chunk_rows, question_rows], sort_keys=True).encode())
    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "corpus")
        mlflow.log_params({"corpus.fingerprint": corpus.fingerprint(), "model.base_revision": base.revision})
        mlflow.log_metrics(
            {
                "corpus.documents": len(corpus.documents),
                "corpus.chunks": len(chunks),
                "corpus.questions": len(corpus.questions),
                "corpus.skipped": len(corpus.issues),
            }
        )
    publish_markdown("corpus-report", markdown, f"Corpus report for {recipe.name}")
    print(markdown)
    return PreparedCorpus(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "corpus"),
        fingerprint=digest.hexdigest()[:16],
        corpus_fingerprint=corpus.fingerprint(),
        documents=len(corpus.documents),
        chunks=len(chunks),
        questions=len(corpus.questions),
        base_revision=base.revision,
    )


def source_digests(recipe: Recipe) -> dict[str, str]:
    """The bytes of every source file (a folder: each text file in it that `read_folder` reads; a symlink
    leading out of the folder and the data root is never opened, not even to hash it)."""
    from llmpath.corpus import folder_files, source_path

    digests = {}
    for src in recipe.corpus.sources:
        path = source_path(src)
        files = folder_files(path)[0] if path.is_dir() else [path]
        for file in files:
            digests[str(file)] = file_digest(file)
    return digests


def prepare_key(recipe: Recipe, **_) -> dict:
    base = resolve_model(recipe.model.base, recipe.model.revision)
    return {
        "corpus": recipe.corpus.model_dump(),
        "files": source_digests(recipe),
        "model": recipe.model.model_dump(),
        "base": base.revision,
    }


def read_table(prepared: PreparedCorpus, name: str) -> list[dict]:
    import pandas as pd

    return pd.read_parquet(tracking.download(prepared.uri) / f"{name}.parquet").to_dict("records")


# ---------------------------------------------------------------------------------------------- embeddings
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


def embed(recipe: Recipe, prepared: PreparedCorpus, run_id: str) -> Embeddings:
    """Embed every chunk and question. With `index.onnx`, export the embedder and check it against PyTorch
    (every probe text at cosine >= index.min_cosine) before it embeds anything."""
    import mlflow

    cfg, base = recipe.index, resolve_model(recipe.model.base, recipe.model.revision)
    chunks = [c["text"] for c in read_table(prepared, "chunks")]
    questions = [q["question"] for q in read_table(prepared, "questions")]
    torch_embedder = Embedder(base.path, "torch", recipe.model.max_length, cfg.embed_batch_size)
    embedder, metrics, model_uri = torch_embedder, {}, None
    if cfg.onnx:
        folder = export_embedder(base.path, tracking.scratch("embedder-onnx-"))
        embedder = Embedder(folder, "onnx", recipe.model.max_length, cfg.embed_batch_size)
        probe = (chunks[:48] + questions[:16]) or ["probe"]
        parity = cosine_parity(torch_embedder.encode(probe), embedder.encode(probe))
        metrics = {"embedder.onnx_min_cosine": parity["min"], "embedder.onnx_mean_cosine": parity["mean"]}
        print(f"ONNX embedder vs PyTorch on {len(probe)} texts: min cosine {parity['min']:.5f}")
        if parity["min"] < cfg.min_cosine:
            raise EmbedderParityError(
                f"ONNX embedder min cosine {parity['min']:.4f} < index.min_cosine {cfg.min_cosine}: "
                "set index.onnx: false to embed with PyTorch"
            )
    started = time.perf_counter()
    chunk_vectors = embedder.encode(chunks, progress=True)
    seconds = time.perf_counter() - started
    question_vectors = embedder.encode(questions) if questions else np.zeros((0, chunk_vectors.shape[1]))
    metrics |= {"embed.seconds": seconds, "embed.chunks_per_second": len(chunks) / max(seconds, 1e-9)}
    out = tracking.scratch("vectors-")
    np.save(out / "chunks.npy", chunk_vectors.astype(np.float32))
    np.save(out / "questions.npy", question_vectors.astype(np.float32))
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


def embed_key(recipe: Recipe, prepared: PreparedCorpus, **_) -> dict:
    cfg = recipe.index
    return {
        "prepared": prepared.fingerprint,
        "model": recipe.model.model_dump(),
        "base": prepared.base_revision,
        "onnx": cfg.onnx,
        "min_cosine": cfg.min_cosine if cfg.onnx else None,
    }


def load_vectors(embedded: Embeddings, name: str) -> np.ndarray:
    return np.load(tracking.download(embedded.uri) / f"{name}.npy", allow_pickle=False)


# ---------------------------------------------------------------------------------------------- index
def build_record(recipe: Recipe, prepared: PreparedCorpus, embedded: Embeddings) -> dict:
    """What a collection records about its build; equal records mean equal collections."""
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
        "chunking": chunking_settings(recipe.corpus),
        "index_type": cfg.type,
        "index_params": vectors.build_params(cfg),
    }


def build_index(recipe: Recipe, prepared: PreparedCorpus, embedded: Embeddings, run_id: str) -> IndexBuild:
    """Write the chunks into this build's collection (created with its record the first time). Always runs:
    the collection is live state; upserts of content-hashed chunks make a second run a no-op in effect."""
    import mlflow

    record = build_record(recipe, prepared, embedded)
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


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_retrieval(
    recipe: Recipe, prepared: PreparedCorpus, embedded: Embeddings, built: IndexBuild, run_id: str
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
    params = vectors.search_params(cfg, K)
    latencies, found = [], []
    with vectors.connect(built.uri) as client:
        record = read_record(client, built.collection)
        client.load_collection(built.collection)
        check_compatible(record, embedded.embedder, embedded.revision, embedded.dim, built.collection)
        for start in range(0, len(q_vectors), 64):
            t0 = time.perf_counter()
            found += search(
                client,
                built.collection,
                q_vectors[start : start + 64],
                K,
                cfg.metric,
                params,
                dim=record["dim"],
            )
            latencies.append((time.perf_counter() - t0) * 1000 / len(q_vectors[start : start + 64]))
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


# ---------------------------------------------------------------------------------------------- registry
def register_index(recipe: Recipe, built: IndexBuild, evaluation: Evaluation, run_id: str) -> Registration:
    """A registry version per collection: its source is the run's `index/manifest.json` folder, its tags
    name the collection and its build record. The same collection keeps its version."""
    import mlflow

    name = recipe.registered_model
    manifest = built.record | {
        "uri": built.uri if vectors.is_server(built.uri) else "milvus-lite",
        "rows": built.rows,
        "search_params": vectors.search_params(recipe.index),  # what it was evaluated with; serving uses them
    }
    with tracking.use_run(run_id):
        mlflow.log_dict(manifest, "index/manifest.json")
    source = tracking.artifact_uri(run_id, "index")
    evals = {f"eval.{k}": f"{v:.6f}" for k, v in evaluation.metrics.items()}
    key = f"milvus:{built.uri}#{built.collection}"
    tags = (
        {
            "model_uri": key,
            "run_id": run_id,
            "kind": "rag",
            "recipe": recipe.name,
            "collection": built.collection,
            "milvus_uri": built.uri,
            "embedder": built.record["embedder"],
            "embedder_revision": built.record["embedder_revision"],
            "embedder_backend": built.record["embedder_backend"],
            "dim": str(built.record["dim"]),
            "metric": built.record["metric"],
            "corpus_fingerprint": built.record["corpus_fingerprint"],
            "chunking": json.dumps(built.record["chunking"]),
            "index_type": built.record["index_type"],
            "index_params": json.dumps(built.record["index_params"]),
            "rows": str(built.rows),
            "deployable.form": "milvus-server" if vectors.is_server(built.uri) else "milvus-lite",
            "deployable.uri": source,
        }
        | ({"embedder_uri": built.embedder_uri} if built.embedder_uri else {})
        | evals
    )
    description = f"Milvus collections of the rag recipe {recipe.name}"
    # Under the registry lock: two runs of one build never register its collection twice.
    with registry_lock(name, "register_index", create=True, description=description):
        registration = register_version(
            name,
            key,
            evals,
            lambda: str(_client().create_model_version(name, source, run_id=run_id, tags=tags).version),
        )
    with tracking.use_run(run_id):
        mlflow.set_tags({"registered_model": name, "model_version": registration.version})
    return registration


def gate_index(
    recipe: Recipe, registration: Registration, evaluation: Evaluation, run_id: str
) -> GateDecision:
    """Approve this collection for `champion` only when recall@5 reaches `eval.floor` and is not below the
    current champion's (it moves at the end of the run, stage `promote`)."""
    metric = recipe.eval.metric
    champion_version, champion_score = champion_of(registration.name, metric)
    if champion_version == registration.version:
        return kept_as_champion(registration.name, champion_version)
    decision = decide_floor(
        metric, evaluation.metrics[metric], recipe.eval.floor, champion_score, champion_version
    )
    return record_decision(registration, champion_version, decision, run_id)


# ---------------------------------------------------------------------------------------------- answers
def chat_model_folder(recipe: Recipe) -> tuple[Path, str]:
    """The ONNX chat model `/ask` and the answer evaluation use, and what identifies it. `registry:NAME` is
    that model's champion deployable form; anything else is a model source exported once and cached."""
    from llmpath.causal import export_causal_onnx

    source = recipe.ask.chat_model
    if source.startswith("registry:"):
        name = source.removeprefix("registry:")
        version = alias_version(name, CHAMPION)
        if version is None:
            raise LookupError(f"ask.chat_model {source}: {name} has no champion; run its chat recipe first")
        tags = _client().get_model_version(name, version).tags
        if "deployable.uri" not in tags or tags.get("kind") == "rag":
            raise LookupError(f"ask.chat_model {source}: v{version} has no deployable chat form")
        return tracking.download(tags["deployable.uri"]), f"{name} v{version} ({tags['deployable.form']})"
    resolved = resolve_model(source)
    slug = "".join(c if c.isalnum() or c in "-._" else "-" for c in resolved.revision)
    out = settings.cache_dir() / "onnx-chat" / slug
    if not (out / "model.onnx").exists():
        print(f"exporting {source} to ONNX once (cached in {out})")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        export_causal_onnx(resolved.path, partial)
        partial.rename(out)
    return out, resolved.revision


def evaluate_answers(
    recipe: Recipe, prepared: PreparedCorpus, built: IndexBuild, embedded: Embeddings, run_id: str
) -> dict[str, float]:
    """Answer `ask.sample` questions with the chat model twice: with the top `ask.k` passages (the `/ask`
    prompt) and closed-book. Exact match and token F1 for both; a table of question, passages, answers and
    references in MLflow."""
    import mlflow
    from transformers import AutoTokenizer

    from bentos.chat.runtime import OnnxCausalLM, encode_chat

    cfg = recipe.ask
    questions = read_table(prepared, "questions")[: cfg.sample]
    if not questions:
        print("answer evaluation skipped (ask.sample is 0 or there are no questions)")
        return {}
    folder, chat_revision = chat_model_folder(recipe)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    llm = OnnxCausalLM(folder)
    q_vectors = load_vectors(embedded, "questions")[: len(questions)]

    def answer(message: str) -> str:
        # As the Bento's /ask does: passages and question are plain text, never control tokens.
        ids = encode_chat(tokenizer, [{"role": "user", "content": message}])
        return tokenizer.decode(
            list(llm.stream(ids, cfg.max_new_tokens, [tokenizer.eos_token_id])), skip_special_tokens=True
        ).strip()

    with vectors.connect(built.uri) as client:
        client.load_collection(built.collection)
        passages = search(
            client,
            built.collection,
            q_vectors,
            cfg.k,
            recipe.index.metric,
            vectors.search_params(recipe.index, cfg.k),
        )
    rows = {
        k: []
        for k in (
            "question",
            "passages",
            "answer",
            "closed_book",
            "reference",
            "em",
            "f1",
            "closed_em",
            "closed_f1",
        )
    }
    from tqdm.auto import tqdm

    for q, hits in tqdm(list(zip(questions, passages, strict=True)), desc="answering", unit="question"):
        refs = list(q["answers"])
        with_context = answer(fill_prompt(cfg.prompt_template, q["question"], [h["text"] for h in hits]))
        closed = answer(cfg.closed_book_template.replace("{question}", q["question"]))
        rows["question"].append(q["question"])
        rows["passages"].append(
            json.dumps(
                [{"id": h["id"], "score": round(h["score"], 4), "text": h["text"][:300]} for h in hits]
            )
        )
        rows["answer"].append(with_context)
        rows["closed_book"].append(closed)
        rows["reference"].append(" | ".join(refs))
        rows["em"].append(exact_match(with_context, refs))
        rows["f1"].append(token_f1(with_context, refs))
        rows["closed_em"].append(exact_match(closed, refs))
        rows["closed_f1"].append(token_f1(closed, refs))
    metrics = {
        "qa.rag.exact_match": float(np.mean(rows["em"])),
        "qa.rag.f1": float(np.mean(rows["f1"])),
        "qa.closed_book.exact_match": float(np.mean(rows["closed_em"])),
        "qa.closed_book.f1": float(np.mean(rows["closed_f1"])),
        "qa.questions": float(len(questions)),
    }
    with tracking.use_run(run_id):
        mlflow.log_metrics(metrics)
        mlflow.log_table(rows, "eval/answers.json")
        mlflow.set_tag("ask.chat_model", chat_revision)
    print(
        f"answers on {len(questions)} questions with {chat_revision}: with retrieval EM {metrics['qa.rag.exact_match']:.3f} "
        f"F1 {metrics['qa.rag.f1']:.3f}; closed-book EM {metrics['qa.closed_book.exact_match']:.3f} "
        f"F1 {metrics['qa.closed_book.f1']:.3f}"
    )
    return metrics


# ---------------------------------------------------------------------------------------------- packaging
def import_index(recipe: Recipe, labels: dict[str, str], tags: dict[str, str]) -> dict:
    """The champion's index, embedder and the chat model into the BentoML store, for the rag Bento. A Milvus
    Lite collection is copied into a .db of the Bento's own (the flow keeps writing its file; a server
    collection is served where it is). Returns what bento_config.json needs."""
    import bentoml

    manifest = json.loads((tracking.download(tags["deployable.uri"]) / "manifest.json").read_text())
    server = vectors.is_server(tags.get("milvus_uri", ""))
    source_uri = tags["milvus_uri"]  # where the champion's collection was built (a Lite file or a server)
    metadata = {"collection": manifest["collection"], "metric": manifest["metric"], "dim": manifest["dim"]}
    with bentoml.models.create(f"{recipe.serve.bento_name}-index", labels=labels, metadata=metadata) as model:
        folder = Path(model.path)
        if not server:
            with vectors.connect(source_uri) as src, vectors.connect(str(folder / "milvus.db")) as dst:
                copied = vectors.copy_collection(src, dst, manifest["collection"])
            print(f"copied {copied} chunks of {manifest['collection']} into the Bento's own Milvus Lite file")
        if manifest["embedder_backend"] == "onnx":
            shutil.copytree(tracking.download(tags["embedder_uri"]), folder / "embedder")
        else:
            base = resolve_model(recipe.model.base, recipe.model.revision)
            if base.revision != manifest["embedder_revision"]:
                raise LookupError(
                    f"the index was built with {manifest['embedder_revision']} but {recipe.model.base} is now "
                    f"{base.revision}: rebuild the index"
                )
            shutil.copytree(
                base.path, folder / "embedder", ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.h5")
            )
        (folder / "manifest.json").write_text(
            json.dumps(manifest | {"uri": source_uri if server else "milvus.db"}, indent=2)
        )
    chat_folder, chat_revision = chat_model_folder(recipe)
    chat_labels = labels | {"chat_model": chat_revision[:60]}
    with bentoml.models.create(f"{recipe.serve.bento_name}-chat", labels=chat_labels) as chat:
        shutil.copytree(chat_folder, chat.path, dirs_exist_ok=True)
    return {
        "index_model_tag": str(model.tag),
        "chat_model_tag": str(chat.tag),
        "ask": recipe.ask.model_dump(),
        "search_params": manifest["search_params"],
        "embed_max_length": manifest["max_length"],
        # A PyTorch embedder needs torch where the Bento is containerized; the ONNX one does not.
        "extra_packages": ["torch"] if manifest["embedder_backend"] == "torch" else [],
    }


prepare_corpus = stage(
    prepare, name="prepare_corpus", key=prepare_key, code=("llmpath.corpus", "llmpath.data")
)
embed_corpus = stage(
    embed, name="embed", key=embed_key, hardware="gpu-preferred", code=("bentos.rag.runtime",)
)
index = stage(build_index, name="index", code=("llmpath.vectors",))  # live state: always runs, idempotent
evaluate_index = stage(evaluate_retrieval, name="evaluate_retrieval", code=("llmpath.vectors",))
register = stage(register_index, name="register_index")
gate = stage(gate_index, name="gate_index")
answer_questions = stage(evaluate_answers, name="evaluate_answers", retries=0)
