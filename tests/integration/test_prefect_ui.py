"""What the Prefect UI offers and shows, against a real Prefect API (the test harness):

- a recipe deployment deployed from prefect.yaml by `prefect deploy` has the validated recipe as its default,
  so a flow run created with no parameters (the UI's Quick run, a bare `POST .../create_flow_run`) validates
  as that recipe; the kind's own deployment likewise, with its smoke recipe;
- a flow run is named after its recipe and tagged with kind, recipe and registered model;
- the long stages publish a progress artifact under a per-recipe key that reaches 100.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpath.recipes import load_recipe, parse_recipe
from tests.conftest import ROOT, tiny_recipe

pytestmark = pytest.mark.integration


def prefect_deploy(*names: str) -> subprocess.CompletedProcess:
    """`prefect --no-prompt deploy -n NAME ...` from the repository root against the harness's API."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    args = [arg for name in names for arg in ("-n", name)]
    return subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_recipe_deployments_run_with_no_parameters(prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import FlowRun

    from flows.classify import classify
    from flows.rag import rag
    from llmpath.stack import pool_template

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name="cpu-pool", type="process", base_job_template=pool_template("cpu-pool")),
            overwrite=True,
        )
    deployed = prefect_deploy("classify/sst2-smoke", "classify/classify", "rag/squad-smoke")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    cases = {
        "classify/sst2-smoke": (classify, "classify-sst2-smoke.yaml"),
        "classify/classify": (classify, "classify-sst2-smoke.yaml"),
        "rag/squad-smoke": (rag, "rag-squad-smoke.yaml"),
    }
    with get_client(sync_client=True) as client:
        for name, (flow, recipe_file) in cases.items():
            recipe = load_recipe(ROOT / "recipes" / recipe_file)
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == "cpu-pool" and deployment.enforce_parameter_schema
            if name != "classify/classify":
                assert {f"recipe:{recipe.name}", f"model:{recipe.registered_model}"} <= set(deployment.tags)
            # What the UI's Quick run sends: no parameters at all. The server validates the defaults against
            # the flow's schema (a 409 if they did not fit) and the flow's own validation gives the recipe.
            response = client._client.post(f"/deployments/{deployment.id}/create_flow_run", json={})
            assert response.status_code == 201, response.text
            flow_run = FlowRun.model_validate(response.json())
            try:
                assert flow.validate_parameters(flow_run.parameters)["recipe"] == recipe, name
                assert flow_run.parameters["recipe"]["data" if flow is classify else "corpus"]
                if name != "classify/classify":
                    assert f"recipe:{recipe.name}" in flow_run.tags  # a deployment's tags reach its runs
            finally:
                client.delete_flow_run(flow_run.id)  # no worker here: nothing should wait for one


def test_a_flow_run_is_named_tagged_and_shows_stage_progress(
    prefect_harness, home, tmp_path, monkeypatch, tiny_bert
):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.classify import classify

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    raw = tiny_recipe(
        tmp_path, tiny_bert, name="classify-ui-tiny", rows=(96, 32), train={"epochs": 1, "log_every": 2}
    )
    recipe = parse_recipe(raw)
    state = classify(recipe, return_state=True)
    assert state.is_completed(), state
    flow_run_id = state.state_details.flow_run_id

    async def read():
        async with get_client() as api:
            flow_run = await api.read_flow_run(flow_run_id)
            artifacts = await api.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(like_="classify-ui-tiny-"),
                    type=ArtifactFilterType(any_=["progress"]),
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
            return flow_run, artifacts

    flow_run, artifacts = asyncio.run(read())
    assert flow_run.name == f"ui-tiny-{str(flow_run_id)[-4:]}"
    assert {"kind:classify", "recipe:classify-ui-tiny", "model:classify-ui-tiny-classifier"} <= set(
        flow_run.tags
    )
    latest = {}
    for artifact in artifacts:  # newest first
        latest.setdefault(artifact.key, artifact)
    assert {"classify-ui-tiny-finetune-progress", "classify-ui-tiny-parity-progress"} <= set(latest)
    for artifact in latest.values():
        assert artifact.flow_run_id == flow_run_id and artifact.task_run_id is not None
        assert float(artifact.data) == 100.0, (artifact.key, artifact.data)
    assert latest["classify-ui-tiny-finetune-progress"].description.startswith("finetune of classify-ui-tiny")
    # The run's log in the UI says it too (tqdm's bars go to stderr, which the UI never shows).
    lines = flow_run_log(flow_run_id, "finetune: 100%")
    assert any(line.startswith("finetune: 100% (6/6 steps)") for line in lines), lines


def flow_run_log(flow_run_id, wanted: str, timeout: float = 30.0) -> list[str]:
    """The messages of a flow run's log (its task runs' too) once one contains `wanted`: logs reach the API
    in batches."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as api:
            logs = await api.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return [log.message for log in logs]

    deadline = time.monotonic() + timeout
    while True:
        lines = asyncio.run(read())
        if any(wanted in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)
