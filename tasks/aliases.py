"""Alias history: every move of `champion` (by the gate, by hand, by rollback, by a failed run's undo) is one small
MLflow run in the `llmpath-alias-history` experiment, so it shows in the MLflow UI and can be audited and replayed.

Rollback walks the history back: gate and promote moves push a version, rollback and undo pop one.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from llmpath import tracking

HISTORY_EXPERIMENT = "llmpath-alias-history"
PUSH, POP = ("gate", "promote"), ("rollback", "undo")


@dataclass(frozen=True)
class Move:
    model: str
    alias: str
    action: str  # gate | promote | rollback | undo
    from_version: str | None
    to_version: str | None
    who: str
    why: str
    when: str
    order: int  # nanoseconds since the epoch: a total order even within one millisecond
    metrics: dict[str, float]


def who() -> str:
    """The user, plus the Prefect flow run when the move happens inside one."""
    from prefect.context import FlowRunContext

    user = getpass.getuser()
    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        return f"{user} (prefect flow run {ctx.flow_run.name})"
    return user


def record(
    model: str,
    alias: str,
    action: str,
    from_version: str | None,
    to_version: str | None,
    why: str,
    metrics: dict[str, float] | None = None,
) -> Move:
    """Write one move to the history experiment."""
    import mlflow

    move = Move(
        model=model,
        alias=alias,
        action=action,
        from_version=from_version,
        to_version=to_version,
        who=who(),
        why=why,
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        order=time.time_ns(),
        metrics=metrics or {},
    )
    experiment = tracking.ensure_experiment(HISTORY_EXPERIMENT)
    client = mlflow.MlflowClient()
    tags = {
        "llmpath.model": model,
        "llmpath.alias": alias,
        "llmpath.action": action,
        "llmpath.from_version": from_version or "none",
        "llmpath.to_version": to_version or "none",
        "llmpath.who": move.who,
        "llmpath.why": why[:4000],
        "llmpath.order": str(move.order),
    }
    name = f"{model}@{alias}: {_v(from_version)} -> {_v(to_version)} ({action})"
    run = client.create_run(experiment, run_name=name, tags=tags)
    for key, value in move.metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED")
    return move


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _none(value: str) -> str | None:
    return None if value == "none" else value


def history(model: str, alias: str = "champion") -> list[Move]:
    """Every recorded move of `model@alias`, oldest first."""
    import mlflow

    tracking.configure()
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(HISTORY_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`llmpath.model` = '{model}' and tags.`llmpath.alias` = '{alias}'",
        max_results=5000,
    )
    moves = [
        Move(
            model=model,
            alias=alias,
            action=r.data.tags["llmpath.action"],
            from_version=_none(r.data.tags["llmpath.from_version"]),
            to_version=_none(r.data.tags["llmpath.to_version"]),
            who=r.data.tags.get("llmpath.who", "?"),
            why=r.data.tags.get("llmpath.why", ""),
            when=datetime.fromtimestamp(r.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
            order=int(r.data.tags["llmpath.order"]),
            metrics=dict(r.data.metrics),
        )
        for r in runs
    ]
    return sorted(moves, key=lambda m: m.order)


def last_move(model: str, alias: str = "champion") -> Move | None:
    """The newest recorded move of `model@alias` (who moved it last), or None."""
    moves = history(model, alias)
    return moves[-1] if moves else None


def stack(moves: list[Move]) -> list[str | None]:
    """The champions a rollback walks back through, oldest first: pushes add the new version, pops remove one."""
    out: list[str | None] = []
    for move in moves:
        if move.action in POP:
            if out:
                out.pop()
        else:
            out.append(move.to_version)
    return out


def rollback_target(moves: list[Move], current: str | None) -> str | None:
    """The version `champion` goes back to. Raises when there is nothing to go back to, or when the alias was
    moved outside llmpath (the history no longer describes it)."""
    versions = stack(moves)
    if not versions:
        raise LookupError("no recorded champion moves: nothing to roll back")
    if versions[-1] != current:
        raise LookupError(
            f"champion is {_v(current)} but the last recorded move set {_v(versions[-1])}: it was moved outside "
            "llmpath. Choose a version explicitly: llmpath promote MODEL VERSION --reason ..."
        )
    if len(versions) < 2 or versions[-2] is None:
        raise LookupError(
            f"{_v(current)} is the first recorded champion: there is no previous one to go back to"
        )
    return versions[-2]


def table(moves: list[Move], metric: str | None = None) -> str:
    """The history as a plain-text table, newest last."""
    header = ["when (UTC)", "action", "move", "who", "why"] + ([metric] if metric else [])
    rows = [header]
    for m in moves:
        row = [m.when, m.action, f"{_v(m.from_version)} -> {_v(m.to_version)}", m.who, m.why]
        if metric:
            value = m.metrics.get(f"eval.{metric}")
            row.append(f"{value:.4f}" if value is not None else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
