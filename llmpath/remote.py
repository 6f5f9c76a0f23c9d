"""Talking to a running stack (`llmpath up`): find its Prefect API, trigger a recipe's deployment."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from llmpath import settings


def stack_api_url() -> str | None:
    """The Prefect API of the stack `llmpath up` started in this project home, if it answers."""
    from llmpath import stack

    state = stack.load_state(stack.state_file())
    if state is None:
        return None
    config = stack.StackConfig(
        settings.project_home(), state.host, state.prefect_port, state.mlflow_port, Path(state.prefect_home)
    )
    url = config.prefect_api
    try:
        return url if httpx.get(f"{url}/health", timeout=2).status_code == 200 else None
    except httpx.HTTPError:
        return None


def use_stack() -> str | None:
    """Point this process at the running stack's Prefect API (so runs show in its UI), unless PREFECT_API_URL
    is set already. Call before Prefect is imported. Returns the API URL in use, if any."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    url = stack_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url
    return url


def trigger(recipe, wait: bool = True) -> int:
    """Create a flow run of the recipe's deployment (`<kind>/<kind>`) with the recipe as its parameter."""
    url = use_stack()
    if not url:
        raise LookupError(
            "no Prefect API to trigger on: start the stack with `llmpath up` (or set PREFECT_API_URL)"
        )
    from prefect.deployments import run_deployment

    name = f"{recipe.kind}/{recipe.kind}"
    flow_run = run_deployment(
        name,
        parameters={"recipe": recipe.model_dump(mode="json")},
        timeout=None if wait else 0,
        poll_interval=3,
    )
    ui = url.removesuffix("/api")
    print(f"flow run {flow_run.name} of {name}: {ui}/runs/flow-run/{flow_run.id}")
    if not wait:
        return 0
    print(f"finished: {flow_run.state.name}. MLflow UI: {settings.mlflow_ui_url()}")
    return 0 if flow_run.state.is_completed() else 1
