"""The `promote` and `rollback` flows: move `champion` by hand, each move recorded in the alias history."""

from __future__ import annotations

from prefect import flow

from tasks import flowrun
from tasks.registry import move_champion, roll_back_champion


@flow(name="promote", log_prints=True, flow_run_name=flowrun.run_name)
def promote(model: str, version: str, reason: str, force: bool = False) -> bool:
    """Point `model@champion` at `version` (it must have a deployable ONNX form unless `force`). Returns whether
    the alias moved (False when `version` already was the champion)."""
    if not reason.strip():
        raise ValueError("say why: the reason is part of the alias history")
    flowrun.begin(tags=(f"model:{model}",))
    return move_champion(model, str(version), reason, force=force) is not None


@flow(name="rollback", log_prints=True, flow_run_name=flowrun.run_name)
def rollback(model: str, reason: str) -> str:
    """Move `model@champion` back to the version it held before the last recorded move."""
    if not reason.strip():
        raise ValueError("say why: the reason is part of the alias history")
    flowrun.begin(tags=(f"model:{model}",))
    move = roll_back_champion(model, reason)
    return move.to_version
