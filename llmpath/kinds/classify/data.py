"""classify data: labelled text rows, validated by row and field, split, and reported with label balance
and token lengths."""

from __future__ import annotations

from llmpath.protocol import CheckedData
from llmpath.splits import file_rows, files_markdown, load_splits


def token_length_percentiles(texts: list[str], tokenizer, max_length: int) -> dict[str, float]:
    import numpy as np

    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]])
    out = {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)}
    out["max"] = float(lengths.max())
    out["over_max_length"] = float((lengths > max_length).sum())
    return out


def build_report(recipe, splits: dict[str, list[dict]], reports: list, tokenizer) -> dict:
    labels = recipe.data.labels
    report = {"splits": {}, "files": []}
    for name, rows in splits.items():
        counts = [sum(1 for r in rows if r["label"] == i) for i in range(len(labels))]
        report["splits"][name] = {
            "rows": len(rows),
            "labels": dict(zip(labels, counts, strict=True)),
            "tokens": token_length_percentiles([r["text"] for r in rows], tokenizer, recipe.model.max_length),
        }
    report["files"] = file_rows(reports)
    return report


def report_markdown(report: dict, max_length: int) -> str:
    lines = [
        "# Data report",
        "",
        "| split | rows | labels | tokens p50/p90/p99/max | over max_length |",
        "|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        t = s["tokens"]
        balance = ", ".join(f"{k}: {v}" for k, v in s["labels"].items())
        lines.append(
            f"| {name} | {s['rows']} | {balance} | {t['p50']:.0f}/{t['p90']:.0f}/{t['p99']:.0f}/{t['max']:.0f} "
            f"| {t['over_max_length']:.0f} (truncated to {max_length}) |"
        )
    return "\n".join(lines + files_markdown(report)) + "\n"


def check_data(recipe) -> CheckedData:
    """Load and validate the recipe's data and build its report (no training)."""
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    splits, reports = load_splits(recipe.data)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    report = build_report(recipe, splits, reports, AutoTokenizer.from_pretrained(base.path))
    return CheckedData(splits, reports, report, report_markdown(report, recipe.model.max_length), base)
