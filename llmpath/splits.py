"""Train/validation splits every training kind shares: loading and validating files into deterministic
splits, the per-file table of the data report, and writing prepared splits to (and reading them from) a run."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmpath import data as d
from llmpath import tracking
from llmpath.config import DataConfig
from llmpath.results import PreparedData

Validate = Callable[[list[dict], DataConfig, str], d.ValidationReport]


def _sample(rows: list, limit: int | None, seed: int) -> list:
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def load_splits(
    cfg: DataConfig,
    validate: Validate | None = None,
    key: Callable[[Any], str] = lambda row: row["text"],
) -> tuple[dict[str, list], list[d.ValidationReport]]:
    """Validated, deterministic train/validation splits plus the per-file reports. `validate` turns a file's
    rows into kept items (classify: text/label rows; chat: conversations); `key` says when two are the same."""
    validate = validate or d.validate_rows
    train = d.check_split(cfg, cfg.train, validate)
    reports = [train]
    if cfg.validation:
        val = d.check_split(cfg, cfg.validation, validate)
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


def files_markdown(report: dict) -> list[str]:
    """The per-file table of a data report, as Markdown lines."""
    lines = ["", "| file | rows | kept | dropped | why |", "|---|---|---|---|---|"]
    for f in report["files"]:
        why = ", ".join(f"{k}: {v}" for k, v in f["why"].items()) or "-"
        lines.append(f"| {f['file']} | {f['rows']} | {f['kept']} | {f['dropped']} | {why} |")
    return lines


def percentiles(lengths: list[int]) -> dict[str, float]:
    import numpy as np

    if not lengths:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    values = np.array(lengths)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": float(values.max())}


def write_prepared(
    run_id: str,
    splits: dict[str, list[dict]],
    reports: list[d.ValidationReport],
    report: dict,
    markdown: str,
    base_revision: str,
    columns: list[str] | None = None,
    metrics: dict[str, float] | None = None,
) -> PreparedData:
    """Write the splits (parquet), the report (JSON and Markdown) and the row issues to the run's `data/`
    artifacts, log the fingerprint and row counts, and return the reference the next stages read."""
    import mlflow
    import pandas as pd

    out = tracking.scratch("data-")
    digest = hashlib.sha256()
    for name, rows in splits.items():
        pd.DataFrame(rows, columns=columns).to_parquet(out / f"{name}.parquet", index=False)
        digest.update(json.dumps(rows, sort_keys=True).encode())
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown)
    d.write_issues_csv(reports, out / "row_issues.csv")
    fingerprint = digest.hexdigest()[:16]
    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "data")
        mlflow.log_params({"data.fingerprint": fingerprint, "model.base_revision": base_revision})
        mlflow.log_metrics(
            {f"data.{name}_rows": len(rows) for name, rows in splits.items()}
            | {"data.dropped_rows": sum(r.rows - len(r.kept) for r in reports)}
            | (metrics or {})
        )
    return PreparedData(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "data"),
        fingerprint=fingerprint,
        rows={k: len(v) for k, v in splits.items()},
        base_revision=base_revision,
    )


def write_checked(
    run_id: str, checked, columns: list[str] | None = None, metrics: dict[str, float] | None = None
) -> tuple[PreparedData, str]:
    """`write_prepared` of a kind's `CheckedData`; returns the reference and the report's Markdown."""
    prepared = write_prepared(
        run_id,
        checked.splits,
        checked.reports,
        checked.report,
        checked.markdown,
        checked.base.revision,
        columns=columns,
        metrics=metrics,
    )
    return prepared, checked.markdown


def read_split(data: PreparedData, name: str) -> list[dict]:
    import pandas as pd

    folder = tracking.download(data.uri)
    return pd.read_parquet(folder / f"{name}.parquet").to_dict("records")


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, computed once per process for each (file, size, mtime): the stages of one run
    ask for the digests of the same data files several times. A rewritten file has a new mtime, so a new digest."""
    st = path.stat()
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
