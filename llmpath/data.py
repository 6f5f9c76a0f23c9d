"""Load labelled text tables and validate them row by row before any expensive work."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpath import settings
from llmpath.config import DataConfig

_FORMATS = {".tsv": "tsv", ".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


class DataError(ValueError):
    """Data that cannot be used; the message names file, row and field."""


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


def resolve_path(name: str, what: str = "data file", folders: bool = False) -> Path:
    """A recipe path: absolute, or relative to the data root (`LLMPATH_DATA_DIR`). A file, or with `folders`
    a file or a folder."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        root = settings.data_root()
        if root is None:
            raise DataError(
                f"{what} {name!r} is relative but LLMPATH_DATA_DIR is not set; "
                "point it at your datasets folder or use an absolute path"
            )
        path = root / path
    if not (path.exists() if folders else path.is_file()):
        raise DataError(f"{what} not found: {path}")
    return path


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"


def _read_json_plain(path: Path, fmt: str) -> list[dict[str, Any]]:
    """JSON rows as written, for files whose columns mix types (Arrow refuses them; we report them by row)."""
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: line {n}: not valid JSON ({err.msg})") from None
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: expected a list of objects (one per row)")
    return rows


def load_rows(path: Path, fmt: str = "auto") -> list[dict[str, Any]]:
    """Read a local table with `datasets`, keeping every cell as written (no NA guessing)."""
    from datasets import load_dataset

    if fmt == "auto":
        fmt = _FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            raise DataError(f"{path}: unknown file type; set data.format")
    try:
        if fmt in ("tsv", "csv"):
            # SST-2 and friends are unquoted: a literal `"` inside a sentence must not start a quoted field.
            extra = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
            ds = load_dataset("csv", data_files=str(path), split="train", keep_default_na=False, **extra)
        elif fmt in ("json", "jsonl"):
            ds = load_dataset("json", data_files=str(path), split="train")
        else:
            ds = load_dataset("parquet", data_files=str(path), split="train")
    except Exception as err:
        if fmt in ("json", "jsonl"):
            return _read_json_plain(path, fmt)
        raise DataError(f"{path}: could not be read as {fmt}: {_root_cause(err)}") from err
    return ds.to_list()


def _label_index(value: Any, labels: list[str]) -> tuple[int | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing"
    if isinstance(value, bool):
        return None, f"wrong type: {type(value).__name__}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if text in labels:
            return labels.index(text), None
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            return None, f"unknown label {value!r} (expected one of {labels} or 0..{len(labels) - 1})"
    if isinstance(value, int):
        if 0 <= value < len(labels):
            return value, None
        return None, f"unknown label {value!r} (expected 0..{len(labels) - 1})"
    return None, f"wrong type: {type(value).__name__}"


def validate_rows(rows: list[dict[str, Any]], cfg: DataConfig, file: str) -> ValidationReport:
    """Check every row; keep the good ones as {"text", "label"} and report the rest by row and field."""
    report = ValidationReport(file=file, rows=len(rows))
    if rows:
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in rows[0]]
        if missing:
            raise DataError(
                f"{file}: column(s) {missing} not found; columns are {list(rows[0])}. "
                "Set data.text_column / data.label_column"
            )
    seen: dict[tuple[str, int], int] = {}
    for n, row in enumerate(rows, start=1):
        text, raw_label = row.get(cfg.text_column), row.get(cfg.label_column)
        problems = []
        if not isinstance(text, str):
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
    """Fail when invalid rows exceed the recipe's share; otherwise they are dropped and reported."""
    if report.rows == 0:
        raise DataError(f"{report.file}: no rows")
    share = report.invalid / report.rows
    if share > cfg.max_invalid_fraction:
        first = "\n".join(f"  {i}" for i in report.issues if not i.problem.startswith("duplicate"))
        first = "\n".join(first.splitlines()[:20])
        raise DataError(
            f"{report.file}: {report.invalid} of {report.rows} rows invalid ({share:.1%}) > "
            f"data.max_invalid_fraction={cfg.max_invalid_fraction}. First problems:\n{first}\n"
            "Fix the file, or raise data.max_invalid_fraction to drop them and go on."
        )


def write_issues_csv(reports: list[ValidationReport], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "row", "field", "problem"])
        for report in reports:
            for issue in report.issues:
                writer.writerow([issue.file, issue.row, issue.field, issue.problem])
