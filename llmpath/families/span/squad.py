"""SQuAD for extractive QA: the questions of a SQuAD v1.1 JSON file as validated rows (every bad entry named by
file, paragraph and field, never its text), the held-out split by paragraph or by article (no evaluation
question's paragraph is ever trained on), and SQuAD v1.1's official exact match and F1.

Pure logic: files in, rows out; no model, no MLflow."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from llmpath.data import RowIssue, ValidationReport
from llmpath.files import DataError, read_text
from llmpath.metrics.answers import exact_match, normalize_answer, token_f1

__all__ = [
    "exact_match",
    "load_squad",
    "normalize_answer",
    "split_by_group",
    "squad_scores",
    "token_f1",
]


def _paragraphs(path: Path) -> list[tuple[str, int, object]]:
    """(article title, paragraph number, paragraph) of a SQuAD file; a malformed file is one clear error."""
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not JSON (line {err.lineno}); qa data is SQuAD v1.1 JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: no top-level `data` list: not SQuAD JSON")
    out = []
    for a, article in enumerate(doc["data"], start=1):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            out.append((f"article {a}", 0, None))
            continue
        title = article.get("title") if isinstance(article.get("title"), str) else f"article {a}"
        out += [(title, p, para) for p, para in enumerate(article["paragraphs"], start=1)]
    return out


def _answers(qa: dict, context: str) -> tuple[list[str], list[int], str | None]:
    """(texts, starts) of the answers that sit in the context at their `answer_start`, or the problem."""
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        return [], [], "missing" if answers is None else "empty or wrong type: expected a list of answers"
    texts, starts = [], []
    for ans in answers:
        if not isinstance(ans, dict):
            return [], [], "wrong type: an answer is not an object"
        text, start = ans.get("text"), ans.get("answer_start")
        if not isinstance(text, str) or not text.strip():
            return [], [], "wrong type or empty: answer text"
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            return [], [], "wrong type: answer_start is not a non-negative integer"
        if context[start : start + len(text)] != text:
            return [], [], "answer_start does not point at the answer text in the context"
        texts.append(text)
        starts.append(start)
    return texts, starts, None


def load_squad(path: Path, label: str | None = None) -> ValidationReport:
    """The questions of a SQuAD file as `kept` rows {id, title, paragraph, question, context, answers,
    answer_starts}; `paragraph` ("<title>#<n>") is the unit the split keeps together. Bad entries become row
    issues (row: the question's number in the file; field: where it sits), never quoting the text."""
    file = label or str(path)
    report = ValidationReport(file=file)
    seen: set[str] = set()
    n = 0
    for title, p, para in _paragraphs(path):
        where = f"{title} paragraph {p}"
        if not isinstance(para, dict):
            n += 1
            report.issues.append(RowIssue(file, n, where, "wrong type: expected a paragraph object"))
            continue
        context, qas = para.get("context"), para.get("qas")
        if not isinstance(qas, list):
            n += 1
            report.issues.append(RowIssue(file, n, f"{where}.qas", "missing or wrong type: expected a list"))
            continue
        for q, qa in enumerate(qas, start=1):
            n += 1
            field = f"{where}.qas[{q}]"
            if not isinstance(context, str) or not context.strip():
                report.issues.append(RowIssue(file, n, f"{where}.context", "missing or empty text"))
                continue
            if not isinstance(qa, dict):
                report.issues.append(RowIssue(file, n, field, "wrong type: expected a question object"))
                continue
            question, qid = qa.get("question"), qa.get("id")
            if not isinstance(question, str) or not question.strip():
                report.issues.append(RowIssue(file, n, f"{field}.question", "missing or empty text"))
                continue
            if not isinstance(qid, str) or not qid:
                report.issues.append(RowIssue(file, n, f"{field}.id", "missing or wrong type"))
                continue
            if qid in seen:
                report.duplicates += 1
                report.issues.append(RowIssue(file, n, f"{field}.id", "duplicate: an earlier question's id"))
                continue
            texts, starts, problem = _answers(qa, context)
            if problem:
                report.issues.append(RowIssue(file, n, f"{field}.answers", problem))
                continue
            seen.add(qid)
            report.kept.append(
                {
                    "id": qid,
                    "title": title,
                    "paragraph": f"{title}#{p}",
                    "question": question.strip(),
                    "context": context,
                    "answers": texts,
                    "answer_starts": starts,
                }
            )
    report.rows = n
    return report


def split_by_group(
    rows: Sequence[dict], by: str, fraction: float, seed: int
) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows, whole groups on each side: `by` is "paragraph" or "article" (title). A seeded
    draw of groups, at least one on each side; no held-out question shares its group with a training one."""
    key = "paragraph" if by == "paragraph" else "title"
    groups = sorted({r[key] for r in rows})
    if len(groups) < 2:
        raise DataError(
            f"only {len(groups)} {by} with usable questions: too few to hold one out (data.split: {by})"
        )
    random.Random(seed).shuffle(groups)
    n_held = min(max(1, round(len(groups) * fraction)), len(groups) - 1)
    held = set(groups[:n_held])
    return [r for r in rows if r[key] not in held], [r for r in rows if r[key] in held]


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1's exact match and F1 (each question against its best reference), as fractions of 1."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(exact_match(p, r) for p, r in zip(predictions, references, strict=True))
    f1 = sum(token_f1(p, r) for p, r in zip(predictions, references, strict=True))
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}
