"""Base vs candidate vs champion on a recipe's gate metric, across its runs (`llmpath compare RECIPE`): the
three metrics every run logs (`base.<metric>`, `candidate.<metric>`, `champion.<metric>`), as a table and a
chart. The MLflow UI's run comparison and chart view show the same metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from llmpath import links, settings, tracking

ROLES = ("base", "candidate", "champion")


@dataclass(frozen=True)
class GateRow:
    run_id: str
    name: str
    started: datetime
    status: str
    version: str | None
    scores: dict[str, float]  # role -> score on the gate metric (missing: not logged, e.g. no champion yet)
    decision: str | None


def gate_rows(experiment_name: str, metric: str, limit: int = 50) -> tuple[str | None, list[GateRow]]:
    """The experiment's id and its latest `limit` runs, oldest first."""
    import mlflow

    tracking.configure()
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None, []
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit
    )
    rows = [
        GateRow(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            started=datetime.fromtimestamp(run.info.start_time / 1000),
            status=run.info.status,
            version=run.data.tags.get("model_version"),
            scores={
                r: run.data.metrics[f"{r}.{metric}"] for r in ROLES if f"{r}.{metric}" in run.data.metrics
            },
            decision=run.data.tags.get("promotion.decision"),
        )
        for run in runs
    ]
    return experiment.experiment_id, rows[::-1]


def table(rows: list[GateRow], metric: str) -> str:
    """The rows as an aligned text table, one run a line."""
    header = ["run", "started", "status", "version", *(f"{r}.{metric}" for r in ROLES), "decision"]
    body = [
        [
            row.name,
            row.started.strftime("%Y-%m-%d %H:%M"),
            row.status,
            f"v{row.version}" if row.version else "-",
            *(f"{row.scores[r]:.4f}" if r in row.scores else "-" for r in ROLES),
            row.decision or "-",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    )


def chart(rows: list[GateRow], metric: str, path: Path, title: str) -> Path:
    """A line per role over the runs (x: run names, oldest first), as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(rows) + 3), 4.5))
    x = list(range(len(rows)))
    for role, marker in zip(ROLES, "osD", strict=True):
        points = [(i, row.scores[role]) for i, row in zip(x, rows, strict=True) if role in row.scores]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=role)
    ax.set_xticks(x, [row.name for row in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_url(experiment_id: str, rows: list[GateRow]) -> str:
    """The MLflow UI's comparison of these runs."""
    return links.compare_url(settings.mlflow_ui_url(), experiment_id, [row.run_id for row in rows])
