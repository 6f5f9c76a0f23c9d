"""A retrieval corpus: documents and evaluation questions read from SQuAD JSON, a folder of Markdown/text files
or JSONL; cut into chunks by paragraph or by token windows; every chunk named by a hash of its content.

Pure logic (files in, dataclasses out): no Milvus, no MLflow. The tokenizer is the embedder's, so a window of
`chunk_tokens` is exactly what the embedder sees.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmpath.config import CorpusConfig, CorpusSource
from llmpath.data import DataError, RowIssue, resolve_path

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Document:
    doc_id: str  # unique in the corpus: "<source>#<n>" for SQuAD paragraphs, the relative path for files
    text: str
    source: str  # the file it came from (relative to the source path's parent)
    title: str = ""


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    answers: tuple[str, ...]
    doc_id: str  # the gold document (for SQuAD: the paragraph holding the answer)


@dataclass(frozen=True)
class Chunk:
    id: str  # content hash of (doc_id, text)
    doc_id: str
    text: str
    source: str
    title: str
    position: int  # 0-based chunk number within its document


@dataclass
class Corpus:
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    issues: list[RowIssue] = field(default_factory=list)
    read: int = 0  # rows/documents looked at, valid or not

    def fingerprint(self) -> str:
        """What the corpus holds, independent of chunking: a digest of every document id and text."""
        digest = hashlib.sha256()
        for doc in self.documents:
            digest.update(doc.doc_id.encode() + b"\0" + doc.text.encode() + b"\0")
        return "sha256:" + digest.hexdigest()[:16]


def chunk_id(doc_id: str, text: str) -> str:
    """The id of a chunk is the hash of what it holds: the same chunk always gets the same id, so writing it
    again (a re-run, a resumed crash) replaces it instead of adding a copy."""
    return hashlib.sha256(doc_id.encode() + b"\0" + text.encode()).hexdigest()[:32]


# ---- reading ---------------------------------------------------------------------------------------------------


def source_format(src: CorpusSource, path: Path) -> str:
    if src.format != "auto":
        return src.format
    if path.is_dir():
        return "folder"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        return "squad"
    raise DataError(f"{path}: cannot tell the corpus format; set format: squad, folder or jsonl")


def source_path(src: CorpusSource) -> Path:
    """A source (file or folder): absolute, or relative to the data root (`LLMPATH_DATA_DIR`)."""
    return resolve_path(src.path, "corpus source", folders=True)


def read_squad(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """Each paragraph becomes a document; each question (with its answers) points at its paragraph."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid JSON: {err}") from None
    articles = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(articles, list):
        raise DataError(f"{path}: not SQuAD format (expected {{'data': [{{'title', 'paragraphs'}}]}})")
    n = 0
    for a, article in enumerate(articles):
        title = str(article.get("title", "")).replace("_", " ") if isinstance(article, dict) else ""
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            corpus.issues.append(RowIssue(path.name, a + 1, f"data[{a}].paragraphs", "missing"))
            continue
        for p, para in enumerate(paragraphs):
            if src.max_documents and n >= src.max_documents:
                return
            n += 1
            corpus.read += 1
            where = f"data[{a}].paragraphs[{p}]"
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str) or not context.strip():
                corpus.issues.append(RowIssue(path.name, n, f"{where}.context", "empty text"))
                continue
            doc_id = f"{path.name}#{a}.{p}"
            corpus.documents.append(Document(doc_id, context.strip(), path.name, title))
            if not src.questions:
                continue
            for q, qa in enumerate(para.get("qas") or []):
                answers = tuple(
                    str(x.get("text", "")).strip() for x in qa.get("answers") or [] if isinstance(x, dict)
                )
                question = str(qa.get("question", "")).strip()
                if not question or not any(answers):
                    corpus.issues.append(
                        RowIssue(path.name, n, f"{where}.qas[{q}]", "missing question or answers")
                    )
                    continue
                qid = str(qa.get("id") or f"{doc_id}.q{q}")
                corpus.questions.append(Question(qid, question, tuple(x for x in answers if x), doc_id))


def read_folder(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """Every Markdown/text file under the folder is a document; its title is its first heading or its name."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no {', '.join(TEXT_SUFFIXES)} files in this folder")
    for n, file in enumerate(files[: src.max_documents], start=1):
        corpus.read += 1
        rel = file.relative_to(path).as_posix()
        try:
            text = file.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            corpus.issues.append(RowIssue(rel, n, "file", "not UTF-8 text"))
            continue
        if not text:
            corpus.issues.append(RowIssue(rel, n, "file", "empty text"))
            continue
        heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")
        corpus.documents.append(Document(rel, text, rel, heading or file.stem))


def read_jsonl(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """One document per line, its text in `text_field` (and its id in `id_field`, if named)."""
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if src.max_documents and len(seen) >= src.max_documents:
                return
            if not line.strip():
                continue
            corpus.read += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                corpus.issues.append(RowIssue(path.name, n, "(line)", f"not JSON: {err.msg}"))
                continue
            text = row.get(src.text_field) if isinstance(row, dict) else None
            if text is None:
                corpus.issues.append(RowIssue(path.name, n, src.text_field, "missing"))
                continue
            if not isinstance(text, str):
                corpus.issues.append(RowIssue(path.name, n, src.text_field, "wrong type: not a string"))
                continue
            if not text.strip():
                corpus.issues.append(RowIssue(path.name, n, src.text_field, "empty text"))
                continue
            ident = str(row.get(src.id_field, "")) if src.id_field else ""
            doc_id = f"{path.name}#{ident or n}"
            if doc_id in seen:
                corpus.issues.append(RowIssue(path.name, n, src.id_field or "id", f"duplicate: {doc_id}"))
                continue
            seen.add(doc_id)
            title = str(row.get("title", "")) if isinstance(row, dict) else ""
            corpus.documents.append(Document(doc_id, text.strip(), path.name, title))


READERS = {"squad": read_squad, "folder": read_folder, "jsonl": read_jsonl}


def read_corpus(cfg: CorpusConfig) -> Corpus:
    """Read every source. Bad rows are named (file, row, field) and skipped; too many fail the run."""
    corpus = Corpus()
    for src in cfg.sources:
        path = source_path(src)
        READERS[source_format(src, path)](path, src, corpus)
    if not corpus.documents:
        raise DataError("the corpus has no usable documents: " + "; ".join(map(str, corpus.issues[:5])))
    bad = len({(i.file, i.row) for i in corpus.issues if not i.problem.startswith("missing question")})
    if corpus.read and bad / corpus.read > cfg.max_invalid_fraction:
        shown = "\n  ".join(str(i) for i in corpus.issues[:10])
        raise DataError(
            f"{bad} of {corpus.read} documents are unusable (over corpus.max_invalid_fraction {cfg.max_invalid_fraction:.0%}):\n  {shown}"
        )
    ids = {d.doc_id for d in corpus.documents}
    corpus.questions = [q for q in corpus.questions if q.doc_id in ids][: cfg.max_questions]
    return corpus


# ---- chunking --------------------------------------------------------------------------------------------------


def windows(n_tokens: int, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """[start, end) token windows of `size`, each starting `size - overlap` after the previous; the last one
    ends at `n_tokens` (so no tokens are left out and no window is empty)."""
    step = size - overlap
    start = 0
    while True:
        end = min(start + size, n_tokens)
        yield start, end
        if end >= n_tokens:
            return
        start += step


def token_spans(tokenizer, text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of `text` cut into windows of `size` tokens (special tokens not counted)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if not offsets:
        return []
    return [(offsets[s][0], offsets[e - 1][1]) for s, e in windows(len(offsets), size, overlap)]


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def chunk_document(doc: Document, cfg: CorpusConfig, tokenizer) -> list[Chunk]:
    """paragraph: each paragraph is a chunk, and one longer than `chunk_tokens` is cut into windows;
    tokens: the whole document in windows of `chunk_tokens` overlapping by `chunk_overlap`."""
    size = cfg.chunk_tokens - 2  # [CLS] and [SEP] take two of the embedder's positions
    overlap = min(cfg.chunk_overlap, size - 1)
    pieces = paragraphs(doc.text) if cfg.chunking == "paragraph" else [doc.text]
    texts: list[str] = []
    for piece in pieces:
        spans = token_spans(tokenizer, piece, size, overlap)
        if cfg.chunking == "paragraph" and len(spans) == 1:
            texts.append(piece)
        else:
            texts.extend(piece[a:b].strip() for a, b in spans)
    texts = [t for t in texts if len(t) >= cfg.min_chars]
    return [
        Chunk(chunk_id(doc.doc_id, t), doc.doc_id, t, doc.source, doc.title, i) for i, t in enumerate(texts)
    ]


def chunk_corpus(documents: Iterable[Document], cfg: CorpusConfig, tokenizer) -> list[Chunk]:
    """Every document's chunks, in corpus order; a chunk met twice (same document, same text) is kept once."""
    seen: set[str] = set()
    out = []
    for doc in documents:
        for chunk in chunk_document(doc, cfg, tokenizer):
            if chunk.id not in seen:
                seen.add(chunk.id)
                out.append(chunk)
    return out


def chunking_settings(cfg: CorpusConfig) -> dict:
    """What decides the chunks (recorded with the collection)."""
    return {
        "chunking": cfg.chunking,
        "chunk_tokens": cfg.chunk_tokens,
        "chunk_overlap": cfg.chunk_overlap,
        "min_chars": cfg.min_chars,
    }


def as_rows(items: Iterable) -> list[dict]:
    return [asdict(x) for x in items]
