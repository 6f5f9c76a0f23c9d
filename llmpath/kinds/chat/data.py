"""chat data: Alpaca / `messages` / ShareGPT rows, validated by row and field, rendered with the base model's
chat template, labels on assistant tokens only; over-long conversations cut or dropped and counted."""

from __future__ import annotations

import json

from llmpath.chat import ChatColumns, ChatReport, render, validate_conversations
from llmpath.protocol import CheckedData
from llmpath.splits import file_rows, files_markdown, load_splits, percentiles


def columns(cfg) -> ChatColumns:
    return ChatColumns(format=cfg.chat_format, **cfg.columns)


def validate_rows(rows: list[dict], cfg, label: str) -> ChatReport:
    """A file's rows as conversations, each bad row named by row and field."""
    return validate_conversations(rows, columns(cfg), label)


def split_conversations(cfg) -> tuple[dict[str, list], list[ChatReport]]:
    """Validated, deterministic train/validation conversations (a validation file, or a seeded split)."""
    return load_splits(cfg, validate_rows, key=_key)


def _key(messages: list[dict[str, str]]) -> str:
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


def render_split(tokenizer, conversations: list, max_length: int, overflow: str) -> tuple[list[dict], dict]:
    """Rows ready for training (ids, labels) and counts of what the length rule did."""
    rows, truncated, dropped = [], 0, 0
    for messages in conversations:
        item = render(tokenizer, messages, max_length, overflow)
        if item is None:
            dropped += 1
            continue
        truncated += item.truncated
        rows.append(
            {
                "messages": _key(messages),
                "input_ids": item.input_ids,
                "labels": item.labels,
                "truncated": item.truncated,
            }
        )
    return rows, {"truncated": truncated, "dropped_too_long": dropped}


def check_data(recipe) -> CheckedData:
    """Load, validate and render the recipe's conversations; the report counts truncated and dropped rows."""
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    splits, reports = split_conversations(recipe.data)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=False)
    rendered, report = {}, {"kind": "chat", "splits": {}, "files": []}
    for name, conversations in splits.items():
        rows, counts = render_split(tokenizer, conversations, recipe.model.max_length, recipe.data.overflow)
        if not rows:
            raise ValueError(
                f"data.{name}: no conversation left after the length rule (model.max_length="
                f"{recipe.model.max_length}, data.overflow={recipe.data.overflow})"
            )
        rendered[name] = rows
        report["splits"][name] = {
            "rows": len(rows),
            "turns": sum(len(json.loads(r["messages"])) for r in rows),
            "assistant_tokens": sum(sum(1 for x in r["labels"] if x != -100) for r in rows),
            "tool_calls": sum(r["messages"].count('"tool_calls"') for r in rows),
            "tokens": percentiles([len(r["input_ids"]) for r in rows]),
        } | counts
    report["files"] = file_rows(reports)
    markdown = report_markdown(report, recipe.model.max_length, recipe.data.overflow)
    return CheckedData(rendered, reports, report, markdown, base)


def report_markdown(report: dict, max_length: int, overflow: str) -> str:
    lines = [
        "# Data report (chat)",
        "",
        f"| split | conversations | turns | assistant tokens | tokens p50/p90/p99/max | over {max_length} tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        t = s["tokens"]
        rule = f"{s['truncated']} truncated" if overflow == "truncate" else f"{s['dropped_too_long']} dropped"
        lines.append(
            f"| {name} | {s['rows']} | {s['turns']} | {s['assistant_tokens']} "
            f"| {t['p50']:.0f}/{t['p90']:.0f}/{t['p99']:.0f}/{t['max']:.0f} | {rule} |"
        )
    calls = {n: s["tool_calls"] for n, s in report["splits"].items() if s.get("tool_calls")}
    if calls:
        lines += ["", "Assistant turns with tool calls: " + ", ".join(f"{n} {c}" for n, c in calls.items())]
    return "\n".join(lines + files_markdown(report)) + "\n"


def prepare(recipe, run_id: str):
    """Write the rendered splits and the report to the run; the length rule's counts become metrics."""
    from llmpath.splits import write_checked

    checked = check_data(recipe)
    splits = checked.report["splits"]
    metrics = {f"data.{n}_truncated": s["truncated"] for n, s in splits.items()} | {
        f"data.{n}_dropped_too_long": s["dropped_too_long"] for n, s in splits.items()
    }
    return write_checked(run_id, checked, metrics=metrics)
