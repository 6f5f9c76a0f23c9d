"""A retrieval corpus: documents and evaluation questions read from SQuAD JSON, a folder of Markdown/text files
or JSONL, every bad row named (file, row, field). Cutting them into chunks is `chunking`.

Pure logic (files in, dataclasses out): no Milvus, no MLflow, no model.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmpath import settings
from llmpath.data import DataError, RowIssue, resolve_path
from llmpath.files import UnreadableFile, json_lines, parse_json, read_text
from llmpath.files import inside as is_inside
from llmpath.kinds.rag.recipe import CorpusConfig, CorpusSource

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


def _squad_questions(para: dict, doc_id: str, where: str, row: int, file: str, corpus: Corpus) -> None:
    """The questions of one paragraph; a malformed entry is named (file, paragraph, field) and skipped."""
    qas = para.get("qas", [])
    if not isinstance(qas, list):
        corpus.issues.append(RowIssue(file, row, f"{where}.qas", "wrong type: expected a list of questions"))
        return
    for q, qa in enumerate(qas):
        field_name = f"{where}.qas[{q}]"
        question = qa.get("question") if isinstance(qa, dict) else None
        given = qa.get("answers") if isinstance(qa, dict) else None
        if not isinstance(question, str) or not isinstance(given, list):
            corpus.issues.append(RowIssue(file, row, field_name, "missing question or answers"))
            continue
        answers = tuple(
            x["text"].strip() for x in given if isinstance(x, dict) and isinstance(x.get("text"), str)
        )
        if not question.strip() or not any(answers):
            corpus.issues.append(RowIssue(file, row, field_name, "missing question or answers"))
            continue
        ident = qa.get("id")
        qid = ident if isinstance(ident, str | int) and not isinstance(ident, bool) else f"{doc_id}.q{q}"
        corpus.questions.append(Question(str(qid), question.strip(), tuple(x for x in answers if x), doc_id))


def read_squad(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """Each paragraph becomes a document; each question (with its answers) points at its paragraph."""
    raw = parse_json(read_text(path), path)
    articles = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(articles, list):
        raise DataError(f"{path}: not SQuAD format (expected {{'data': [{{'title', 'paragraphs'}}]}})")
    n = 0
    for a, article in enumerate(articles):
        title = article.get("title") if isinstance(article, dict) else None
        title = title.replace("_", " ") if isinstance(title, str) else ""
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
            if src.questions:
                _squad_questions(para, doc_id, where, n, path.name, corpus)


def folder_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The text files under a corpus folder, sorted: those that are (or link to) files inside the folder or
    the data root, and symlinks that lead elsewhere (never read). Symlinked folders are not followed."""
    folder, root = path.resolve(), settings.data_root()
    inside, outside = [], []
    for parent, _, names in os.walk(path):
        for name in names:
            file = Path(parent) / name
            if file.suffix.lower() not in TEXT_SUFFIXES:
                continue
            target = file.resolve()
            if not target.is_file():
                continue
            (inside if is_inside(target, folder, root) else outside).append(file)
    return sorted(inside), sorted(outside)


def read_folder(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """Every Markdown/text file under the folder is a document; its title is its first heading or its name.
    A symlink to a file outside the folder and the data root is named and skipped, never read."""
    files, outside = folder_files(path)
    if not files and not outside:
        raise DataError(f"{path}: no {', '.join(TEXT_SUFFIXES)} files in this folder")
    listed = sorted([(f, True) for f in files] + [(f, False) for f in outside])
    for n, (file, readable) in enumerate(listed[: src.max_documents], start=1):
        corpus.read += 1
        rel = file.relative_to(path).as_posix()
        if not readable:
            problem = "symlink to a file outside the corpus folder and the data root: skipped, not read"
            corpus.issues.append(RowIssue(rel, n, "file", problem))
            continue
        try:
            text = read_text(file).strip()
        except UnreadableFile as err:
            corpus.issues.append(RowIssue(rel, n, "file", err.problem))
            continue
        if not text:
            corpus.issues.append(RowIssue(rel, n, "file", "empty text"))
            continue
        heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")
        corpus.documents.append(Document(rel, text, rel, heading or file.stem))


def read_jsonl(path: Path, src: CorpusSource, corpus: Corpus) -> None:
    """One document per line, its text in `text_field` (and its id in `id_field`, if named)."""
    seen: set[str] = set()
    for n, line in enumerate(json_lines(read_text(path)), start=1):
        if src.max_documents and len(seen) >= src.max_documents:
            return
        if not line.strip():
            continue
        corpus.read += 1
        try:
            row = parse_json(line, path, n)
        except DataError as err:
            problem = str(err).removeprefix(f"{path}: line {n}: ")
            corpus.issues.append(RowIssue(path.name, n, "(line)", problem))
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
        ident = row.get(src.id_field) if src.id_field else None
        if ident is not None and (not isinstance(ident, str | int) or isinstance(ident, bool)):
            corpus.issues.append(RowIssue(path.name, n, src.id_field, "wrong type: not a string or number"))
            continue
        doc_id = f"{path.name}#{ident if ident not in (None, '') else n}"
        if doc_id in seen:
            corpus.issues.append(RowIssue(path.name, n, src.id_field or "id", f"duplicate: {doc_id}"))
            continue
        seen.add(doc_id)
        title = row.get("title")
        corpus.documents.append(
            Document(doc_id, text.strip(), path.name, title if isinstance(title, str) else "")
        )


READERS = {"squad": read_squad, "folder": read_folder, "jsonl": read_jsonl}


def _sources(cfg: CorpusConfig) -> str:
    return ", ".join(src.path for src in cfg.sources)


def read_corpus(cfg: CorpusConfig) -> Corpus:
    """Read every source. Bad rows are named (file, row, field) and skipped; too many fail the run, and so does
    a corpus with no text as long as `min_chars` (every chunk would be dropped)."""
    corpus = Corpus()
    for src in cfg.sources:
        path = source_path(src)
        READERS[source_format(src, path)](path, src, corpus)
    shown = "; ".join(str(i) for i in corpus.issues[:5])
    if not corpus.documents:
        raise DataError(f"{_sources(cfg)}: the corpus has no usable documents: {shown or 'no rows'}")
    # A malformed question leaves its paragraph usable: only documents count against the share.
    bad = len({(i.file, i.row) for i in corpus.issues if ".qas" not in i.field})
    if corpus.read and bad / corpus.read > cfg.max_invalid_fraction:
        more = f"; and {len(corpus.issues) - 5} more" if len(corpus.issues) > 5 else ""
        raise DataError(
            f"{bad} of {corpus.read} documents are unusable (over corpus.max_invalid_fraction "
            f"{cfg.max_invalid_fraction:.0%}): {shown}{more}; fix them, or raise corpus.max_invalid_fraction "
            "to skip them"
        )
    pieces = (
        p for d in corpus.documents for p in (paragraphs(d.text) if cfg.chunking == "paragraph" else [d.text])
    )
    if not any(len(p) >= cfg.min_chars for p in pieces):
        raise too_short(cfg, len(corpus.documents))
    ids = {d.doc_id for d in corpus.documents}
    corpus.questions = [q for q in corpus.questions if q.doc_id in ids][: cfg.max_questions]
    return corpus


def require_questions(corpus: Corpus, cfg: CorpusConfig) -> None:
    """A rag recipe is gated on recall@5: without a single evaluation question it would embed and index the
    whole corpus only to fail at the gate. Names the first malformed questions, if that is why."""
    if corpus.questions:
        return
    skipped = [str(i) for i in corpus.issues if "qas" in i.field][:3]
    why = f" (skipped: {'; '.join(skipped)})" if skipped else ""
    raise DataError(
        f"{_sources(cfg)}: the corpus has no evaluation questions{why}; add a SQuAD source with "
        "questions: true (retrieval is gated on recall@5)"
    )


def too_short(cfg: CorpusConfig, documents: int) -> DataError:
    return DataError(
        f"{_sources(cfg)}: no chunk of the {documents} documents has corpus.min_chars ({cfg.min_chars}) "
        "characters or more, so nothing would be indexed; lower corpus.min_chars or check the sources"
    )


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
