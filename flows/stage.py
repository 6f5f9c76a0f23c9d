"""The `llmpath-stage` flow: one stage, run on whichever work pool its deployment is bound to.

A pipeline routes a stage here (`run_deployment("llmpath-stage/<pool>")`) when the recipe maps the stage to that
pool and the pool has a live worker. Inputs arrive as JSON (MLflow URIs and small metrics, never local paths)
and are validated against the stage function's own type hints; the result is persisted for the caller.
"""

from __future__ import annotations

import typing
from typing import Any

from prefect import flow
from pydantic import TypeAdapter

import tasks.catalog  # noqa: F401  (declares every stage)
from llmpath.recipes import Recipe
from tasks import flowrun
from tasks.stages import STAGES


def typed_inputs(stage: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Turn JSON inputs back into the stage's typed results, using the stage function's annotations."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    hints = typing.get_type_hints(STAGES[stage].fn)
    unknown = set(inputs) - set(hints)
    if unknown:
        raise ValueError(f"stage {stage!r} takes no inputs named {sorted(unknown)}")
    return {name: TypeAdapter(hints[name]).validate_python(value) for name, value in inputs.items()}


@flow(
    name="llmpath-stage",
    log_prints=True,
    persist_result=True,
    result_serializer="json",
    flow_run_name=flowrun.run_name,
)
def run_stage(stage: str, recipe: Recipe, inputs: dict[str, Any]) -> Any:
    """Run one pipeline stage (the caller's recipe and inputs) on this deployment's work pool."""
    flowrun.begin(recipe, tags=(f"stage:{stage}",))
    params = typed_inputs(stage, inputs)
    if "recipe" in typing.get_type_hints(STAGES[stage].fn):
        params["recipe"] = recipe
    return STAGES[stage](**params)
