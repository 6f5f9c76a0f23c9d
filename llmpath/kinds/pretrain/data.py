"""pretrain data: documents from the recipe's sources (validated by file, row and field), a seeded held-out
share drawn by document, and both splits tokenized and packed into blocks of `model.max_length` tokens."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from llmpath.data import RowIssue, ValidationReport, check_threshold
from llmpath.files import DataError, read_table, read_text, resolve_path
from llmpath.protocol import CheckedData
from llmpath.splits import file_digest, file_rows, files_markdown


def squad_rows(path: Path) -> list:
    """The paragraphs of a SQuAD file, as rows `{"context": ...}` (anything else: a row issue later)."""
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not JSON (line {err.lineno}); a squad source is SQuAD's JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: no top-level `data` list: not SQuAD JSON (set the source's format)")
    rows = []
    for article in doc["data"]:
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        rows += paragraphs if isinstance(paragraphs, list) else [article]
    return rows


def read_source(source) -> ValidationReport:
    """One source's documents (`kept`: {"text", "doc"}), each bad row named by row and field."""
    path = resolve_path(source.path)
    rows = squad_rows(path) if source.format == "squad" else read_table(path, source.format)
    fields = ["context"] if source.format == "squad" else source.fields
    report = ValidationReport(file=str(path), rows=len(rows))
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            report.issues.append(RowIssue(str(path), n, "(row)", f"wrong type: {type(row).__name__}"))
            continue
        parts, problems = [], []
        for name in fields:
            value = row.get(name)
            if value is None:
                problems.append(RowIssue(str(path), n, name, "missing"))
            elif not isinstance(value, str):
                problems.append(RowIssue(str(path), n, name, f"wrong type: {type(value).__name__}"))
            elif value.strip():
                parts.append(value.strip())
        if not problems and not parts:
            problems.append(RowIssue(str(path), n, fields[0], "empty text"))
        if problems:
            report.issues += problems
            continue
        report.kept.append({"text": "\n".join(parts), "doc": f"{source.path}#{n}"})
    return report


def load_documents(cfg) -> tuple[list[dict], list[ValidationReport]]:
    """Every source's documents in recipe order; too-short and repeated texts (across files too) dropped."""
    docs, reports, seen = [], [], {}
    for source in cfg.sources:
        report = read_source(source)
        check_threshold(report, cfg)
        kept = []
        for item in report.kept:
            row = int(item["doc"].rsplit("#", 1)[1])
            if len(item["text"]) < cfg.min_chars:
                report.issues.append(RowIssue(report.file, row, "(text)", f"too short (< {cfg.min_chars})"))
            elif item["text"] in seen:
                report.duplicates += 1
                report.issues.append(
                    RowIssue(report.file, row, "(text)", f"duplicate: same as {seen[item['text']]}")
                )
            else:
                seen[item["text"]] = item["doc"]
                kept.append(item)
        report.kept = kept
        if not kept:
            raise DataError(f"{report.file}: no usable documents ({report.rows} rows read, all dropped)")
        docs += kept
        reports.append(report)
    return docs, reports


def split_documents(docs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training, held-out) documents: a seeded draw of whole documents, at least one each side."""
    if len(docs) < 2:
        raise DataError(f"only {len(docs)} usable document: too few to hold out (data.heldout_fraction)")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_held = min(max(1, round(len(docs) * fraction)), len(docs) - 1)
    held = set(order[:n_held])
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def corpus_splits(recipe) -> tuple[dict[str, list[dict]], list[ValidationReport]]:
    """{"train": documents, "validation": held-out documents} and the per-file reports."""
    docs, reports = load_documents(recipe.data)
    train, held = split_documents(docs, recipe.data.heldout_fraction, recipe.data.seed)
    return {"train": train, "validation": held}, reports


def data_files(recipe) -> dict[str, str]:
    return {s.path: file_digest(resolve_path(s.path)) for s in recipe.data.sources}


def pack(docs: Sequence[Sequence[int]], eos: int, block: int) -> list[tuple[list[int], list[int]]]:
    """Documents' token ids, each followed by `eos`, concatenated and cut into blocks of `block` tokens;
    with each block, the indexes of the documents it holds. The last block may be shorter (kept if it has
    a token to predict)."""
    out, ids, owners = [], [], []
    for index, doc in enumerate(docs):
        ids += [*doc, eos]
        owners += [index] * (len(doc) + 1)
    for start in range(0, len(ids), block):
        piece = ids[start : start + block]
        if len(piece) >= 2:
            out.append((piece, sorted(set(owners[start : start + block]))))
    return out


def unigram_perplexity(train_counts: Counter, vocab_size: int, targets: Sequence[int]) -> float:
    """Perplexity of add-one smoothed token frequencies (`train_counts` over the vocabulary) on `targets`."""
    total = sum(train_counts.values()) + vocab_size
    nll = -sum(math.log((train_counts.get(t, 0) + 1) / total) for t in targets)
    return math.exp(nll / len(targets)) if targets else math.nan


def tokenize_split(tokenizer, docs: list[dict], block: int) -> list[dict]:
    """Packed blocks of one split: `input_ids` and the documents each holds (`docs`, by id)."""
    ids = [tokenizer(d["text"], add_special_tokens=False)["input_ids"] for d in docs]
    return [
        {"input_ids": piece, "docs": [docs[i]["doc"] for i in owners]}
        for piece, owners in pack(ids, tokenizer.eos_token_id, block)
    ]


def check_data(recipe) -> CheckedData:
    """Documents -> split by document -> the tokenizer trained on the training documents (the scratch base)
    -> packed blocks; the report counts documents, tokens and blocks."""
    from transformers import AutoTokenizer

    splits, reports = corpus_splits(recipe)
    base = scratch_base(recipe, splits["train"])
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=False)
    blocks = {name: tokenize_split(tokenizer, docs, recipe.model.max_length) for name, docs in splits.items()}
    report = {"kind": "pretrain", "splits": {}, "files": file_rows(reports), "vocab_size": len(tokenizer)}
    for name, rows in blocks.items():
        report["splits"][name] = {
            "documents": len(splits[name]),
            "characters": sum(len(d["text"]) for d in splits[name]),
            "tokens": sum(len(r["input_ids"]) for r in rows),
            "blocks": len(rows),
        }
    report["heldout_documents"] = [d["doc"] for d in splits["validation"]]
    return CheckedData(blocks, reports, report, report_markdown(report, recipe.model.max_length), base)


def report_markdown(report: dict, block: int) -> str:
    lines = [
        "# Data report (pretrain)",
        "",
        f"Tokenizer: byte-level BPE, {report['vocab_size']} tokens, trained on the training documents only.",
        "",
        f"| split | documents | characters | tokens | blocks of {block} |",
        "|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        lines.append(f"| {name} | {s['documents']} | {s['characters']} | {s['tokens']} | {s['blocks']} |")
    return "\n".join(lines + files_markdown(report)) + "\n"


def prepare(recipe, run_id: str):
    """Write the packed splits and the report to the run; token counts become metrics."""
    from llmpath.splits import write_checked

    checked = check_data(recipe)
    metrics = {
        f"data.{n}_{k}": s[k] for n, s in checked.report["splits"].items() for k in ("documents", "tokens")
    }
    return write_checked(run_id, checked, metrics=metrics)


def scratch_base(recipe, train_docs: list[dict] | None = None):
    """The tokenizer trained on the training documents and the random init: the base training starts from."""
    from llmpath.kinds.pretrain.base import build_base

    def texts() -> list[str]:
        docs = train_docs if train_docs is not None else corpus_splits(recipe)[0]["train"]
        return [d["text"] for d in docs]

    return build_base(recipe, corpus_digest(recipe), texts)


def corpus_digest(recipe) -> str:
    """What decides the scratch base: the files' bytes, the data, tokenizer and model sections, the seed."""
    key = {
        "files": data_files(recipe),
        "data": recipe.data.model_dump(),
        "tokenizer": recipe.tokenizer.model_dump(),
        "model": recipe.model.model_dump(),
        "seed": recipe.train.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
