"""The Prefect and MLflow UIs of `llmpath up`, driven as a person would: log in to Prefect with the stack's auth
string, open Deployments, the classify smoke deployment, Run > Quick run, and watch the run until the UI says
Completed; then the MLflow UI shows the model the run registered with its `champion` alias, and the run's dataset
inputs. The stack is real (Prefect server, MLflow server, a cpu-pool worker) and so is the smoke run (the packaged
MiniLM on SST-2, a few minutes on 2 cores)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from llmpath.stack.auth import StackAPI
from llmpath.stack.config import StackConfig
from tests.conftest import free_port
from tests.integration.test_stack import llmpath, log_tails

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEPLOYMENT = "sst2-smoke"  # the classify flow's deployment of recipes/classify-sst2-smoke.yaml
EXPERIMENT, MODEL = "classify-sst2-smoke", "sst2-classifier-smoke"
RUN_TIMEOUT_S = 1500  # the smoke run alone takes 4-6 min on 2 cores, far longer beside neighbours' work


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    prefect: str
    mlflow: str
    secret: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory, shared_data):
    """`llmpath up` in a private home (its own ports, Prefect home and Bento store); always taken down."""
    tmp = tmp_path_factory.mktemp("ui-stack")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(
        LLMPATH_HOME=str(tmp / "home"),
        PREFECT_HOME=str(tmp / "prefect"),
        LLMPATH_DATA_DIR=str(shared_data),
        BENTOML_HOME=str(tmp / "bentoml"),
        LLMPATH_PREFECT_PORT=str(free_port()),
        LLMPATH_MLFLOW_PORT=str(free_port()),
    )
    home = Path(env["LLMPATH_HOME"])
    try:
        up = llmpath(env, "up", "--no-gpu-worker", "--timeout", "150")
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{log_tails(home)}"
        secret = (home / ".llmpath" / "prefect-auth").read_text().strip()
        yield Stack(
            env,
            home,
            f"http://127.0.0.1:{env['LLMPATH_PREFECT_PORT']}",
            f"http://127.0.0.1:{env['LLMPATH_MLFLOW_PORT']}",
            secret,
        )
    finally:
        down = llmpath(env, "down", timeout=120)
        assert down.returncode == 0, down.stderr


def prefect_login(page, stack: Stack) -> None:
    """The login page Prefect shows when the API has an auth string: paste it, as the `up` message says."""
    page.goto(f"{stack.prefect}/login", wait_until="networkidle")
    page.get_by_placeholder("admin:pass").fill(stack.secret)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(re.compile(r".*/dashboard"))


def test_quick_run_from_the_prefect_ui_completes(stack, page, shot):
    prefect_login(page, stack)
    page.get_by_text("Deployments", exact=True).first.click()
    page.wait_for_url(re.compile(r".*/deployments$"))
    # Sixteen deployments: more than a page; find it as a person would, with the search box.
    page.get_by_placeholder("Search deployments").fill(DEPLOYMENT)
    deployment = page.get_by_text(DEPLOYMENT, exact=True).first
    expect(deployment).to_be_visible()
    shot("deployments")
    deployment.click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/"))
    expect(page.get_by_text("flows/classify.py:classify").first).to_be_visible()
    # The Parameters tab shows the recipe the deployment runs, not an empty form.
    page.get_by_text("Parameters", exact=True).first.click()
    expect(page.get_by_text("classify-sst2-smoke").first).to_be_visible()
    shot("deployment-parameters")

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Quick run", exact=True).click()
    # Quick run opens the run dialog with the deployment's parameters filled in: the recipe, ready to go.
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Run Deployment")).to_be_visible()
    expect(dialog.get_by_role("textbox").first).to_have_value("classify-sst2-smoke")
    shot("quick-run-dialog")
    refused = []  # what the UI's own API calls got back, for the message when the run is not created
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.wait_for_load_state("networkidle")  # the form validates against the flow's schema as it loads
    for _ in range(3):  # a click the page swallows while busy leaves the dialog open and nothing created
        dialog.get_by_role("button", name="Run", exact=True).click()
        with contextlib.suppress(AssertionError):
            expect(dialog).to_be_hidden(timeout=20_000)  # it closes once the run is created
        if not dialog.is_visible() or created_run(stack):
            break
    run_id = wait_for_created_run(stack, refused)
    page.goto(f"{stack.prefect}/runs/flow-run/{run_id}", wait_until="networkidle")
    expect(page.get_by_text(re.compile(r"sst2-smoke", re.I)).first).to_be_visible()

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = flow_run_state(stack, run_id)
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(10)
    page.reload(wait_until="networkidle")
    shot("flow-run")
    assert state == "COMPLETED", f"flow run {run_id} ended {state}\n{log_tails(stack.home)}"
    # What the UI shows, not only what the API says.
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()


def api(stack: Stack) -> StackAPI:
    """The stack's Prefect API as the CLI calls it (auth string, CSRF token)."""
    port, mlflow_port = int(stack.env["LLMPATH_PREFECT_PORT"]), int(stack.env["LLMPATH_MLFLOW_PORT"])
    home = Path(stack.env["PREFECT_HOME"])
    return StackAPI(StackConfig(stack.home, "127.0.0.1", port, mlflow_port, home, stack.secret), timeout=30)


def created_run(stack: Stack) -> str | None:
    """The id of the flow run the Quick run dialog created (the deployment's only run), if there is one."""
    client = api(stack)
    try:
        answer = client.post("/flow_runs/filter", {"deployments": {"name": {"any_": [DEPLOYMENT]}}})
        answer.raise_for_status()
        runs = answer.json()
    finally:
        client.close()
    assert len(runs) <= 1, [r["name"] for r in runs]
    return runs[0]["id"] if runs else None


def wait_for_created_run(stack: Stack, refused: list[str], timeout: float = 60) -> str:
    """The id of the flow run the Quick run button created (the only run of the deployment)."""
    deadline = time.monotonic() + timeout
    client = api(stack)
    try:
        while time.monotonic() < deadline:
            answer = client.post("/flow_runs/filter", {"deployments": {"name": {"any_": [DEPLOYMENT]}}})
            answer.raise_for_status()
            if runs := answer.json():
                assert len(runs) == 1, [r["name"] for r in runs]
                return runs[0]["id"]
            time.sleep(1)
    finally:
        client.close()
    raise AssertionError(f"no flow run of {DEPLOYMENT} in {timeout:.0f} s; the UI's refused calls: {refused}")


def flow_run_state(stack: Stack, run_id: str) -> str:
    client = api(stack)
    try:
        answer = client.get(f"/flow_runs/{run_id}")
        answer.raise_for_status()
        return answer.json()["state"]["type"]
    finally:
        client.close()


def test_the_mlflow_ui_shows_the_champion_and_its_datasets(stack, page, shot):
    """After the run above: the registered model's page, its version with the `champion` alias, and from there
    the source run with the data it was trained and validated on (MLflow dataset inputs, with their digest)."""
    page.goto(f"{stack.mlflow}/#/models/{MODEL}", wait_until="load")  # MLflow's UI polls: never network-idle
    version = page.get_by_role("row").filter(has_text="Version 1")
    expect(version.get_by_text("@ champion", exact=True)).to_be_visible()
    shot("mlflow-model")
    version.get_by_role("link", name="Version 1").click()
    expect(page.get_by_text("@ champion", exact=True)).to_be_visible()
    # The version's description links the Prefect flow run and names the Bento it was packaged in.
    expect(page.get_by_text(re.compile(r"Prefect flow run sst2-smoke-[0-9a-f]{4}")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"Bento: llmpath-classifier:\w+")).first).to_be_visible()
    shot("mlflow-version")
    page.get_by_role("link", name=re.compile(r"^sst2-smoke-[0-9a-f]{4}$")).first.click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]{32}"))
    datasets = page.get_by_role("heading", name="Datasets", exact=True)
    expect(datasets).to_be_visible()
    training = page.get_by_role("button", name=re.compile(r"^sst2\/train\.tsv \([0-9a-f]{8}\)"))
    expect(training).to_contain_text("training")
    shot("mlflow-run")
