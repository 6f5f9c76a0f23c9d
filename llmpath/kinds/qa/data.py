"""qa data: SQuAD questions validated by file, paragraph and field, held out by whole paragraph (or article),
and reported with paragraph counts and how many windows the contexts need."""

from __future__ import annotations

import random

from llmpath.data import DataError, check_threshold
from llmpath.families.span.squad import load_squad, split_by_group
from llmpath.files import resolve_path
from llmpath.protocol import CheckedData
from llmpath.splits import file_digest, file_rows, files_markdown, percentiles

COLUMNS = ["id", "title", "paragraph", "question", "context", "answers", "answer_starts"]


def _sample(rows: list, limit: int | None, seed: int) -> list:
    return rows if limit is None or len(rows) <= limit else random.Random(seed).sample(rows, limit)


def read(recipe, name: str):
    path = resolve_path(name)
    report = load_squad(path, str(path))
    check_threshold(report, recipe.data)
    if not report.kept:
        raise DataError(f"{path}: no usable questions ({report.rows} read, all dropped)")
    return report


def load_splits(recipe) -> tuple[dict[str, list[dict]], list]:
    """{"train", "validation"} question rows and the per-file reports. Without `data.validation`, whole
    paragraphs (or articles) are held out: no held-out question's paragraph is ever trained on."""
    cfg = recipe.data
    train = read(recipe, cfg.train)
    reports = [train]
    if cfg.validation:
        val = read(recipe, cfg.validation)
        reports.append(val)
        held_out = {r["context"] for r in val.kept}
        train_rows = [r for r in train.kept if r["context"] not in held_out]
        train.leaked = len(train.kept) - len(train_rows)
        val_rows = val.kept
    else:
        train_rows, val_rows = split_by_group(train.kept, cfg.split, cfg.validation_fraction, cfg.seed)
    if not train_rows:
        raise DataError(f"{train.file}: every usable question's paragraph is in the validation file")
    splits = {
        "train": _sample(train_rows, cfg.max_train_rows, cfg.seed),
        "validation": _sample(val_rows, cfg.max_validation_rows, cfg.seed),
    }
    return splits, reports


def data_files(recipe) -> dict[str, str]:
    names = filter(None, (recipe.data.train, recipe.data.validation))
    return {n: file_digest(resolve_path(n)) for n in names}


def build_report(recipe, splits: dict[str, list[dict]], reports: list, tokenizer) -> dict:
    report: dict = {"split": recipe.data.split, "splits": {}, "files": file_rows(reports)}
    for name, rows in splits.items():
        contexts = sorted({r["context"] for r in rows})
        lengths = [len(ids) for ids in tokenizer(contexts, add_special_tokens=False)["input_ids"]]
        report["splits"][name] = {
            "questions": len(rows),
            "paragraphs": len({r["paragraph"] for r in rows}),
            "articles": len({r["title"] for r in rows}),
            "context_tokens": percentiles(lengths),
            "over_window": sum(n > recipe.model.max_length - 32 for n in lengths),
        }
    train_groups = {r["paragraph"] for r in splits["train"]}
    report["shared_paragraphs"] = len(train_groups & {r["paragraph"] for r in splits["validation"]})
    return report


def report_markdown(report: dict, max_length: int) -> str:
    lines = [
        "# Data report",
        "",
        f"Held out by {report['split']}: {report['shared_paragraphs']} paragraphs in both splits.",
        "",
        "| split | questions | paragraphs | articles | context tokens p50/p90/max | contexts needing > 1 window |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        t = s["context_tokens"]
        lines.append(
            f"| {name} | {s['questions']} | {s['paragraphs']} | {s['articles']} | "
            f"{t['p50']:.0f}/{t['p90']:.0f}/{t['max']:.0f} | {s['over_window']} (window {max_length}) |"
        )
    return "\n".join(lines + files_markdown(report)) + "\n"


def check_data(recipe) -> CheckedData:
    """Load, validate and split the SQuAD questions and build the report (no training)."""
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    splits, reports = load_splits(recipe)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=False)
    report = build_report(recipe, splits, reports, tokenizer)
    return CheckedData(splits, reports, report, report_markdown(report, recipe.model.max_length), base)
