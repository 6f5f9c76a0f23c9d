"""Talking to a running stack (`llmpath up`): find its Prefect API, trigger a recipe's deployment."""

from __future__ import annotations

import os

import httpx

from llmpath import settings


def running_stack():
    """The configuration (with its auth string) of the stack `llmpath up` started in this project home, if its
    Prefect API answers."""
    from llmpath import stack

    state = stack.load_state(stack.state_file())
    if state is None:
        return None
    config = stack.config_of(state)
    try:
        if httpx.get(f"{config.prefect_api}/health", timeout=2).status_code != 200:
            return None
    except httpx.HTTPError:
        return None
    try:
        return stack.recorded_auth(config, state.auth)
    except stack.StackError as err:  # the auth file is gone or unreadable: say so in one line
        raise LookupError(f"the running stack's auth string: {err}") from None


def use_stack() -> str | None:
    """Point this process at the running stack, as its workers are: its Prefect API (runs show in its UI), its
    MLflow server and its result store (so cached stages are shared), and the stack's auth string when the API
    in use is the stack's. Variables the user set win. Call before Prefect is imported. Returns the Prefect
    API URL in use, if any."""
    config = running_stack()
    if config is not None:
        os.environ.setdefault("PREFECT_API_URL", config.prefect_api)
        os.environ.setdefault("MLFLOW_TRACKING_URI", config.mlflow_url)
        os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(config.prefect_home / "storage"))
        # Only to the stack's own API: a PREFECT_API_URL the user points elsewhere never gets this secret.
        if config.auth_string and os.environ["PREFECT_API_URL"].rstrip("/") == config.prefect_api:
            os.environ.setdefault("PREFECT_API_AUTH_STRING", config.auth_string)
    return os.environ.get("PREFECT_API_URL")


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
