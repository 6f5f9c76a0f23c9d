"""Load labelled text tables and validate them row by row before any expensive work."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpath.config import DataConfig
from llmpath.files import DataError, read_table, resolve_path

__all__ = ["DataError", "resolve_path", "load_rows", "load_split", "validate_rows", "check_threshold"]


@dataclass(frozen=True)
class RowIssue:
    file: str
    row: int  # 1-based data row (the header is not counted)
    field: str
    problem: str

    @property
    def kind(self) -> str:
        for kind in ("duplicate", "empty text", "unknown label", "wrong type", "missing"):
            if self.problem.startswith(kind):
                return f"{kind} {self.field}" if kind in ("missing", "wrong type") else kind
        return self.problem

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: {self.field}: {self.problem}"


@dataclass
class ValidationReport:
    file: str
    rows: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)  # {"text": str, "label": int}
    issues: list[RowIssue] = field(default_factory=list)
    duplicates: int = 0
    leaked: int = 0  # training rows dropped because their text is in the validation split

    @property
    def invalid(self) -> int:
        return len({i.row for i in self.issues if not i.problem.startswith("duplicate")})

    def counts(self) -> dict[str, int]:
        """Dropped rows by kind of problem ("duplicate", "empty text", "unknown label", ...)."""
        by_kind = Counter(i.kind for i in self.issues)
        return dict(sorted(by_kind.items()))


def load_rows(path: Path, fmt: str = "auto") -> list[Any]:
    """Read a local table (TSV/CSV/JSON/JSONL/Parquet), keeping every cell as written."""
    return read_table(path, fmt)


def load_split(cfg: DataConfig, name: str) -> tuple[list[Any], str]:
    """The rows of one split and the label that names it in reports: a hub split (only when `data.hub` is
    set) or a file under the data root (or absolute)."""
    if not cfg.hub:
        path = resolve_path(name)
        return load_rows(path, cfg.format), str(path)
    label = f"hub:{cfg.hub}[{name}]"
    import logging

    # Each failed request is retried five times, each retry a warning line; the error below says it once.
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)
    try:
        from datasets import load_dataset

        rows = load_dataset(cfg.hub, split=name).to_list()
    except Exception as err:  # offline, unknown id or split, gated: the fix is the same
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"{label}: data.hub dataset could not be loaded ({type(err).__name__}: {first}); check the id, "
            "the split name in data.train/data.validation and the network, or use a local file"
        ) from None
    return rows, label


def check_split(cfg: DataConfig, name: str, validate=None) -> ValidationReport:
    """Load one split, check every row (`validate`: classify rows by default; chat passes its own) and fail
    above the recipe's share of invalid rows."""
    rows, label = load_split(cfg, name)
    report = (validate or validate_rows)(rows, cfg, label)
    check_threshold(report, cfg)
    return report


def check_split_sizes(reports: list[ValidationReport]) -> None:
    """Enough usable rows for both splits: the train file's (and the validation file's, when named)."""
    for report in reports:
        if not report.kept:
            raise DataError(f"{report.file}: no usable rows ({report.rows} read, all dropped); fix the file")
    if len(reports) == 1 and len(reports[0].kept) < 2:
        raise DataError(
            f"{reports[0].file}: only {len(reports[0].kept)} usable row: too few to hold out a validation "
            "split (data.validation_fraction); add rows or name a data.validation file"
        )


def _label_index(value: Any, labels: list[str]) -> tuple[int | None, str | None]:
    """The class index of a raw label (a name or a number), or why it is not one. A label that is not a class
    is described by its shape, never quoted: the file may hold anything."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing"
    if isinstance(value, bool):
        return None, f"wrong type: {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"missing: {value} is not a class (expected 0..{len(labels) - 1})"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if text in labels:
            return labels.index(text), None
        if re.fullmatch(r"-?\d{1,9}(\.0*)?", text):  # "1", "-1", "1.0": a class index as written
            value = int(text.partition(".")[0])
        else:
            return None, f"unknown label: not one of {labels} nor 0..{len(labels) - 1}"
    if isinstance(value, int):
        if 0 <= value < len(labels):
            return value, None
        shown = value if abs(value) < 10**9 else "out of range"
        return None, f"unknown label {shown} (expected 0..{len(labels) - 1})"
    return None, f"wrong type: {type(value).__name__}"


def validate_rows(rows: list[Any], cfg: DataConfig, file: str) -> ValidationReport:
    """Check every row; keep the good ones as {"text", "label"} and report the rest by row and field."""
    report = ValidationReport(file=file, rows=len(rows))
    records = [r for r in rows if isinstance(r, dict)]
    if records:
        # The header (or the keys) is file content too: name the columns the recipe asked for, not the file's.
        missing = [c for c in (cfg.text_column, cfg.label_column) if not any(c in r for r in records)]
        if missing:
            width = len(records[0])
            raise DataError(
                f"{file}: column(s) {missing} not found (the rows have {width} column{'s' * (width != 1)}); "
                "set data.text_column / data.label_column to the file's column names"
            )
    seen: dict[tuple[str, int], int] = {}
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            report.issues.append(
                RowIssue(file, n, "(row)", f"wrong type: {type(row).__name__}, not an object")
            )
            continue
        text, raw_label = row.get(cfg.text_column), row.get(cfg.label_column)
        problems = []
        if text is None:
            problems.append(RowIssue(file, n, cfg.text_column, "missing"))
        elif not isinstance(text, str):
            problems.append(RowIssue(file, n, cfg.text_column, f"wrong type: {type(text).__name__}"))
        elif not text.strip():
            problems.append(RowIssue(file, n, cfg.text_column, "empty text"))
        label, why = _label_index(raw_label, cfg.labels)
        if why:
            problems.append(RowIssue(file, n, cfg.label_column, why))
        if problems:
            report.issues.extend(problems)
            continue
        key = (text, label)
        if key in seen and cfg.drop_duplicates:
            report.duplicates += 1
            report.issues.append(RowIssue(file, n, cfg.text_column, f"duplicate: same as row {seen[key]}"))
            continue
        seen.setdefault(key, n)
        report.kept.append({"text": text, "label": label})
    return report


def check_threshold(report: ValidationReport, cfg: DataConfig) -> None:
    """Fail when invalid rows exceed the recipe's share; otherwise they are dropped and reported. One line:
    the count, the first problems by row and field, and the two ways out."""
    if report.rows == 0:
        raise DataError(f"{report.file}: no data rows (only a header, or an empty list)")
    share = report.invalid / report.rows
    if share > cfg.max_invalid_fraction:
        problems = [  # the file is named once, first
            f"row {i.row}: {i.field}: {i.problem}"
            for i in report.issues
            if not i.problem.startswith("duplicate")
        ]
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError(
            f"{report.file}: {report.invalid} of {report.rows} rows invalid ({share:.1%}) > "
            f"data.max_invalid_fraction={cfg.max_invalid_fraction}; first problems: {'; '.join(problems[:5])}"
            f"{more}; fix the file, or raise data.max_invalid_fraction to drop them and go on"
        )


def write_issues_csv(reports: list[ValidationReport], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "row", "field", "problem"])
        for report in reports:
            for issue in report.issues:
                writer.writerow([issue.file, issue.row, issue.field, issue.problem])
