"""Stage `prepare_data`: load, validate, split and report; writes the splits as MLflow artifacts."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmpath import data as d
from llmpath import tracking
from llmpath.config import DataConfig, Recipe
from tasks.publish import publish_markdown
from tasks.results import PreparedData
from tasks.stages import stage

Validate = Callable[[list[dict], DataConfig, str], d.ValidationReport]


def _load_split(cfg: DataConfig, name: str, validate: Validate) -> d.ValidationReport:
    return d.check_split(cfg, name, validate)


def _sample(rows: list, limit: int | None, seed: int) -> list:
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def load_splits(
    cfg: DataConfig,
    validate: Validate = d.validate_rows,
    key: Callable[[Any], str] = lambda row: row["text"],
) -> tuple[dict[str, list], list[d.ValidationReport]]:
    """Validated, deterministic train/validation splits plus the per-file reports. `validate` turns a file's
    rows into kept items (classify: text/label rows; chat: conversations); `key` says when two are the same."""
    train = _load_split(cfg, cfg.train, validate)
    reports = [train]
    if cfg.validation:
        val = _load_split(cfg, cfg.validation, validate)
        reports.append(val)
    d.check_split_sizes(reports)
    if cfg.validation:
        train_rows, val_rows = train.kept, val.kept
    else:
        shuffled = train.kept[:]
        random.Random(cfg.seed).shuffle(shuffled)
        n_val = max(1, int(len(shuffled) * cfg.validation_fraction))
        val_rows, train_rows = shuffled[:n_val], shuffled[n_val:]
    # An item seen in validation must not be trained on, or the evaluation flatters the model.
    held_out = {key(r) for r in val_rows}
    leaked = sum(1 for r in train_rows if key(r) in held_out)
    if leaked:
        train_rows = [r for r in train_rows if key(r) not in held_out]
        print(f"dropped {leaked} training rows that are also in validation")
    if not train_rows:
        raise d.DataError(
            f"{train.file}: every usable training row is also in the validation split; name other files"
        )
    train.leaked = leaked
    splits = {
        "train": _sample(train_rows, cfg.max_train_rows, cfg.seed),
        "validation": _sample(val_rows, cfg.max_validation_rows, cfg.seed),
    }
    return splits, reports


def file_rows(reports: list[d.ValidationReport]) -> list[dict]:
    """The data report's per-file table: rows read, kept, dropped, and why."""
    return [
        {
            "file": r.file,
            "rows": r.rows,
            "kept": len(r.kept) - r.leaked,
            "dropped": r.rows - len(r.kept) + r.leaked,
            "why": r.counts() | ({"also in validation": r.leaked} if r.leaked else {}),
        }
        for r in reports
    ]


def token_length_percentiles(texts: list[str], tokenizer, max_length: int) -> dict[str, float]:
    import numpy as np

    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]])
    out = {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)}
    out["max"] = float(lengths.max())
    out["over_max_length"] = float((lengths > max_length).sum())
    return out


def build_report(
    recipe: Recipe, splits: dict[str, list[dict]], reports: list[d.ValidationReport], tokenizer
) -> dict:
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


def report_markdown(report: dict, max_length: int, overflow: str = "truncate") -> str:
    if report.get("kind") == "chat":
        from tasks.chat import chat_report_markdown

        return chat_report_markdown(report, max_length, overflow)
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
    lines += ["", "| file | rows | kept | dropped | why |", "|---|---|---|---|---|"]
    for f in report["files"]:
        why = ", ".join(f"{k}: {v}" for k, v in f["why"].items()) or "-"
        lines.append(f"| {f['file']} | {f['rows']} | {f['kept']} | {f['dropped']} | {why} |")
    return "\n".join(lines) + "\n"


def check_data(recipe: Recipe):
    """Load and validate the recipe's data and build its report (no training): shared by the stage and
    `llmpath validate`. Returns the splits, the per-file reports, the report dict and the resolved base."""
    if recipe.kind == "chat":
        from tasks.chat import check_chat_data

        return check_chat_data(recipe)
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    splits, reports = load_splits(recipe.data)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    report = build_report(recipe, splits, reports, AutoTokenizer.from_pretrained(base.path))
    return splits, reports, report, base


def prepare(recipe: Recipe, run_id: str) -> PreparedData:
    """Validate the recipe's data, write splits + report to the run, return a reference to them."""
    if recipe.kind == "chat":
        from tasks.chat import prepare_chat

        return prepare_chat(recipe, run_id)
    import pandas as pd

    splits, reports, report, base = check_data(recipe)
    markdown = report_markdown(report, recipe.model.max_length)
    out = tracking.scratch("data-")
    digest = hashlib.sha256()
    for name, rows in splits.items():
        frame = pd.DataFrame(rows, columns=["text", "label"])
        frame.to_parquet(out / f"{name}.parquet", index=False)
        digest.update(json.dumps(rows, sort_keys=True).encode())
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown)
    d.write_issues_csv(reports, out / "row_issues.csv")
    import mlflow

    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "data")
        mlflow.log_params({"data.fingerprint": digest.hexdigest()[:16], "model.base_revision": base.revision})
        mlflow.log_metrics(
            {f"data.{name}_rows": len(rows) for name, rows in splits.items()}
            | {"data.dropped_rows": sum(r.rows - len(r.kept) for r in reports)}
        )
    publish_markdown("data-report", markdown, f"Data report for {recipe.name}")
    print(markdown)
    return PreparedData(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "data"),
        fingerprint=digest.hexdigest()[:16],
        rows={k: len(v) for k, v in splits.items()},
        base_revision=base.revision,
    )


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_key(recipe: Recipe, **_) -> dict:
    """What decides the prepared data: the data section, the files' bytes, the tokenizer (base model revision)."""
    from llmpath.sources import resolve_model

    cfg = recipe.data
    files = {}
    for name in filter(None, (cfg.train, cfg.validation)):
        # A hub dataset is named, not hashed: pin its revision in the id if it must not move.
        files[name] = f"hub:{cfg.hub}" if cfg.hub else file_digest(d.resolve_path(name))
    base = resolve_model(recipe.model.base, recipe.model.revision)
    return {
        "kind": recipe.kind,
        "data": cfg.model_dump(),
        "files": files,
        "model": recipe.model.model_dump(),
        "base": base.revision,
    }


prepare_data = stage(
    prepare, name="prepare_data", key=prepare_key, code=("llmpath.data", "llmpath.chat", "tasks.chat")
)
