"""Preference pairs, pure logic: a row (LLaMA-Factory's ShareGPT form or plain prompt/chosen/rejected texts)
becomes a validated pair or the (field, problem) list that makes it unusable. Problems describe the content,
never quote it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmpath.data import RowIssue, ValidationReport

ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Pair:
    prompt: tuple[tuple[str, str], ...]  # (role, content) turns, ending with a user turn
    chosen: str
    rejected: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.prompt]

    def key(self) -> str:
        return json.dumps([self.messages(), self.chosen, self.rejected], ensure_ascii=False)


class PairReport(ValidationReport):
    """What validation kept (pairs) and why it dropped the rest (by file, row, field)."""


def _shape(value: Any) -> str:
    return "missing" if value is None else f"wrong type: expected text, got {type(value).__name__}"


def _text(value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        return None, _shape(value)
    if not value.strip():
        return None, "empty text"
    return value, None


def _answer(row: dict, column: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A chosen/rejected answer: a text, or one ShareGPT turn from the assistant."""
    value = row.get(column)
    if isinstance(value, dict):
        role = value.get("from", value.get("role"))
        if role is not None and (not isinstance(role, str) or ROLES.get(role) != "assistant"):
            return None, [(f"{column}.from", "bad role: an answer must come from gpt/assistant")]
        text, problem = _text(value.get("value", value.get("content")))
        return text, [(f"{column}.value", problem)] if problem else []
    text, problem = _text(value)
    return text, [(column, problem)] if problem else []


def _conversation(row: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        problem = "missing" if turns is None else "wrong type: expected a non-empty list of turns"
        return [], [("conversations", problem)]
    out, problems = [], []
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            problems.append((where, f"wrong type: expected an object, got {type(turn).__name__}"))
            continue
        role = turn.get("from")
        if not isinstance(role, str) or role not in ROLES:
            problems.append((f"{where}.from", f"bad role: expected one of {sorted(ROLES)}"))
            continue
        text, problem = _text(turn.get("value"))
        if problem:
            problems.append((f"{where}.value", problem))
            continue
        out.append((ROLES[role], text))
    if problems:
        return [], problems
    roles = [r for r, _ in out]
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body or not body or body[0] != "user":
        return [], [("conversations", "bad role order: an optional system turn, then a user turn first")]
    if any(a == b for a, b in zip(body, body[1:], strict=False)):
        return [], [("conversations", "bad role order: user and assistant turns must alternate")]
    if body[-1] != "user":
        return [], [("conversations", "bad role order: the prompt must end with a user turn")]
    return out, []


def detect(row: dict, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    if "conversations" in row:
        return "sharegpt"
    if "prompt" in row:
        return "plain"
    return None


def to_pair(row: Any, fmt: str = "auto") -> tuple[Pair | None, list[tuple[str, str]]]:
    """One row as a pair, or the (field, problem) list that makes it unusable."""
    if not isinstance(row, dict):
        return None, [("(row)", "wrong type: expected an object")]
    form = detect(row, fmt)
    if form == "sharegpt":
        prompt, problems = _conversation(row)
    elif form == "plain":
        text, problem = _text(row.get("prompt"))
        prompt, problems = ([("user", text)], []) if text else ([], [("prompt", problem)])
    else:
        return None, [("(row)", "missing: none of the columns conversations or prompt")]
    chosen, p_chosen = _answer(row, "chosen")
    rejected, p_rejected = _answer(row, "rejected")
    problems += p_chosen + p_rejected
    if problems:
        return None, problems
    if chosen.strip() == rejected.strip():
        return None, [("rejected", "same as chosen: a pair needs two different answers")]
    return Pair(tuple(prompt), chosen, rejected), []


def validate_pairs(rows: list[Any], fmt: str, file: str) -> PairReport:
    """Every row checked; kept pairs in order, duplicates (the same prompt and answers) dropped and counted."""
    report = PairReport(file=file, rows=len(rows))
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        pair, problems = to_pair(row, fmt)
        if problems:
            report.issues += [RowIssue(file, number, where, problem) for where, problem in problems]
            continue
        key = pair.key()
        if key in seen:
            report.duplicates += 1
            report.issues.append(RowIssue(file, number, "(row)", f"duplicate: same as row {seen[key]}"))
            continue
        seen[key] = number
        report.kept.append(pair)
    return report


def fit_window(
    prompt: list[int], chosen: list[int], rejected: list[int], max_length: int, overflow: str
) -> tuple[list[int], list[int], bool] | None:
    """Answers cut so that prompt + answer fits `max_length` (overflow=truncate), or None to drop the pair (a
    prompt that leaves no room for an answer token always drops). Returns (chosen, rejected, truncated)."""
    room = max_length - len(prompt)
    if room < 1:
        return None
    truncated = len(chosen) > room or len(rejected) > room
    if truncated and overflow == "drop":
        return None
    return chosen[:room], rejected[:room], truncated
