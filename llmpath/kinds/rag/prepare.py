"""The corpus check (`llmpath validate` and stage `prepare_corpus`) and the prepared corpus it logs: chunks,
questions, skipped rows and the report. Later stages read only these artifacts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from llmpath import tracking
from llmpath.data import ValidationReport, write_issues_csv
from llmpath.kinds.rag.chunking import Chunk, as_rows, chunk_corpus, chunking_settings
from llmpath.kinds.rag.corpus import Corpus, folder_files, read_corpus, source_path
from llmpath.results import PreparedCorpus
from llmpath.sources import ResolvedModel, resolve_model
from llmpath.splits import file_digest


@dataclass(frozen=True)
class CorpusCheck:
    """What the corpus check found: the corpus, its chunks, the embedder it was cut for and the report."""

    corpus: Corpus
    chunks: list[Chunk]
    base: ResolvedModel
    report: dict
    markdown: str


def check_corpus(recipe) -> CorpusCheck:
    """Read and validate the sources and cut the documents into chunks with the embedder's tokenizer (no
    embedding)."""
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
    return CorpusCheck(corpus, chunks, base, report, markdown)


def prepare(recipe, run_id: str) -> tuple[PreparedCorpus, str]:
    """Check the corpus (see `check_corpus`) and log its chunks, questions and report to the run; returns
    the reference and the report (Markdown)."""
    import mlflow
    import pandas as pd

    checked = check_corpus(recipe)
    corpus, chunks, base = checked.corpus, checked.chunks, checked.base
    out = tracking.scratch("corpus-")
    chunk_rows = as_rows(chunks)
    question_rows = [q | {"answers": list(q["answers"])} for q in as_rows(corpus.questions)]
    pd.DataFrame(chunk_rows).to_parquet(out / "chunks.parquet", index=False)
    pd.DataFrame(question_rows, columns=["qid", "question", "answers", "doc_id"]).to_parquet(
        out / "questions.parquet", index=False
    )
    write_issues_csv([ValidationReport("corpus", issues=corpus.issues)], out / "row_issues.csv")
    (out / "report.md").write_text(checked.markdown)
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
    prepared = PreparedCorpus(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "corpus"),
        fingerprint=digest.hexdigest()[:16],
        corpus_fingerprint=corpus.fingerprint(),
        documents=len(corpus.documents),
        chunks=len(chunks),
        questions=len(corpus.questions),
        base_revision=base.revision,
    )
    return prepared, checked.markdown


def source_digests(recipe) -> dict[str, str]:
    """The bytes of every source file (a folder: each text file in it that `read_folder` reads; a symlink
    leading out of the folder and the data root is never opened, not even to hash it)."""
    digests = {}
    for src in recipe.corpus.sources:
        path = source_path(src)
        files = folder_files(path)[0] if path.is_dir() else [path]
        for file in files:
            digests[str(file)] = file_digest(file)
    return digests


def prepare_key(recipe) -> dict:
    """What decides the prepared corpus: the corpus section, every source's bytes, the embedder's tokenizer."""
    base = resolve_model(recipe.model.base, recipe.model.revision)
    return {
        "corpus": recipe.corpus.model_dump(),
        "files": source_digests(recipe),
        "model": recipe.model.model_dump(),
        "base": base.revision,
    }
