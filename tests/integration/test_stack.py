"""`llmpath up` / `status` / `down` for real: Prefect server, MLflow server, pools, deployments and two workers.

A tiny classify run is triggered through the Prefect API, runs on the cpu-pool process worker and must land in the
stack's MLflow server. The stack is closed to other web pages and to clients without its auth string, while the
CLI and the workers keep working. Every process is stopped in teardown, also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmpath import stack
from tests.conftest import ROOT, free_port, tiny_recipe

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def llmpath(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-m", "llmpath.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:  # say where it was stuck: the stack's logs
        home = Path(env["LLMPATH_HOME"])
        raise AssertionError(
            f"llmpath {' '.join(args)}: no answer in {timeout:.0f} s\n{log_tails(home)}"
        ) from err


def log_tails(home: Path) -> str:
    logs = sorted((home / ".llmpath" / "logs").glob("*.log"))
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


@pytest.fixture
def stack_env(tmp_path, shared_data):
    """A private home, Prefect home and Bento store, the real datasets; the stack is always taken down afterwards."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(
        LLMPATH_HOME=str(home),
        PREFECT_HOME=str(tmp_path / "prefect"),
        LLMPATH_DATA_DIR=str(shared_data),
        BENTOML_HOME=str(tmp_path / "bentoml"),
        LLMPATH_PREFECT_PORT=str(free_port()),
        LLMPATH_MLFLOW_PORT=str(free_port()),
    )
    try:
        yield env
    finally:
        down = llmpath(env, "down", timeout=120)
        assert down.returncode == 0, down.stderr


def test_up_trigger_route_fall_back_and_down(stack_env, tiny_bert, tmp_path):
    """The whole local stack, and GPU routing both ways: the smoke recipe triggered with no gpu-pool worker has its
    finetune stage fall back to CPU and say so; once a ("fake", CPU-only) gpu-pool worker is live, finetune runs
    there as a sub-deployment."""
    env, home = stack_env, Path(stack_env["LLMPATH_HOME"])
    prefect_port, mlflow_port = int(env["LLMPATH_PREFECT_PORT"]), int(env["LLMPATH_MLFLOW_PORT"])
    api, mlflow = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"

    up = llmpath(env, "up", "--no-gpu-worker", "--timeout", "150")
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{log_tails(home)}"
    assert f"Prefect UI:  http://127.0.0.1:{prefect_port}" in up.stdout
    assert f"MLflow UI:   {mlflow}" in up.stdout
    auth_file = home / ".llmpath" / "prefect-auth"
    assert auth_file.stat().st_mode & 0o777 == 0o600 and str(auth_file) in up.stdout
    secret = auth_file.read_text().strip()
    assert secret not in up.stdout + up.stderr
    client = stack.StackAPI(
        stack.StackConfig(home, "127.0.0.1", prefect_port, mlflow_port, Path(env["PREFECT_HOME"]), secret)
    )
    assert httpx.get(f"{api}/health").json() is True  # health answers without auth (probes, `status`)
    assert httpx.get(f"{mlflow}/health").text == "OK"
    assert (
        online_workers(client, "cpu-pool") == ["llmpath-cpu-pool"]
        and online_workers(client, "gpu-pool") == []
    )
    check_closed_to_strangers(api, mlflow, prefect_port, client)
    deployments = client.post("/deployments/filter").json()
    assert {"classify", "chat", "pipeline", "promote", "rollback", "gpu-pool", "cpu-pool"} <= {
        d["name"] for d in deployments
    }
    assert {
        d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
        for d in deployments
    } == {str(ROOT)}

    again = llmpath(env, "up", "--no-gpu-worker")
    assert again.returncode == 0 and "already up" in again.stdout, again.stdout + again.stderr
    status = llmpath(env, "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 2 and status.stdout.count("worker ONLINE") == 1
    assert "Prefect API auth: on" in status.stdout

    # 1. No gpu-pool worker: a recipe file, triggered from the CLI, completes on cpu-pool with finetune on CPU.
    # The tiny model (the smoke recipe's own deployment runs in the browser tier and tests/integration/
    # test_prefect_ui.py); absolute data paths, as a recipe kept outside the data root names them.
    toy_cpu = tmp_path / "toy-cpu"
    toy_cpu.mkdir()
    raw_cpu = tiny_recipe(toy_cpu, tiny_bert, name="stack-cpu")  # 60 steps: learns the toy task, is champion
    raw_cpu["data"] |= {"train": str(toy_cpu / "train.tsv"), "validation": str(toy_cpu / "dev.tsv")}
    (recipe_file := tmp_path / "stack-cpu.yaml").write_text(json.dumps(raw_cpu))  # JSON is YAML
    triggered = llmpath(env, "trigger", str(recipe_file), timeout=1200)
    assert triggered.returncode == 0 and "finished: Completed" in triggered.stdout, (
        f"{triggered.stdout}\n{triggered.stderr}\n{log_tails(home)}"
    )
    first = newest_mlflow_run(mlflow, "stack-cpu")
    assert first["status"] == "FINISHED"
    fallback = first["tags"]["routing.finetune.fallback"]
    assert fallback == "fell back to CPU in this flow: work pool 'gpu-pool' has no online worker"
    assert first["tags"]["stage.finetune"].startswith("ran here (fell back to CPU")
    first_logs = flow_run_logs(client, first["tags"]["prefect.flow_run_id"])
    assert any("fell back to CPU" in line for line in first_logs)
    assert not any(secret in line for line in first_logs)
    assert not any(secret in value for value in [*first["tags"].values(), *first["params"].values()])
    assert candidate_version(mlflow, "stack-cpu-classifier")["run_id"] == first["run_id"]
    # CLI flows started from a shell report to the running stack's Prefect server.
    promote = llmpath(env, "promote", "stack-cpu-classifier", "1", "--reason", "check")
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert f"Prefect API: {api} (the flow run shows in its UI)" in promote.stdout
    assert "v1 is already the champion: nothing to do" in promote.stderr  # the flow's log
    assert "Next:" not in promote.stdout  # nothing moved, nothing to rebuild
    runs = client.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["promote"]}}}).json()
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
    check_no_command_from_a_flow_run(client, deployments, tmp_path)

    # 2. A live gpu-pool worker (this machine has no GPU: the worker stands in for a GPU machine).
    up_gpu = llmpath(env, "up", "--gpu-worker", "--timeout", "150")
    assert up_gpu.returncode == 0 and "worker-gpu-pool" in up_gpu.stdout, up_gpu.stdout + up_gpu.stderr
    toy = tmp_path / "toy"
    toy.mkdir()
    raw = tiny_recipe(toy, tiny_bert, name="stack-tiny", train={"max_steps": 10})
    raw["data"] |= {"train": str(toy / "train.tsv"), "validation": str(toy / "dev.tsv")}  # absolute paths
    flow_run = run_deployment(api, secret, "classify/classify", {"recipe": raw})
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{log_tails(home)}"
    second = newest_mlflow_run(mlflow, "stack-tiny")
    assert second["status"] == "FINISHED"
    assert second["tags"]["stage.finetune"] == "ran on gpu-pool (gpu-pool has a live worker)"
    assert "routing.finetune.fallback" not in second["tags"]
    stage_runs = client.post(
        "/flow_runs/filter", json={"work_pools": {"name": {"any_": ["gpu-pool"]}}}
    ).json()
    assert [(r["parameters"]["stage"], r["state"]["type"]) for r in stage_runs] == [("finetune", "COMPLETED")]
    # The model trained on the gpu-pool worker is the one registered by the run on cpu-pool.
    assert candidate_version(mlflow, "stack-tiny-classifier")["run_id"] == second["run_id"]

    # The auth string is in no log the stack writes (servers, workers, the flow runs they streamed, deploy).
    logs = sorted((home / ".llmpath" / "logs").glob("*.log"))
    assert {"prefect-server.log", "worker-cpu-pool.log", "worker-gpu-pool.log"} <= {log.name for log in logs}
    assert [log.name for log in logs if secret in log.read_text(errors="replace")] == []
    assert secret not in (home / ".llmpath" / "stack.json").read_text()

    recorded = json.loads((home / ".llmpath" / "stack.json").read_text())["parts"]
    assert {p["name"] for p in recorded} == {"prefect-server", "mlflow", "worker-cpu-pool", "worker-gpu-pool"}
    down = llmpath(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert all(stack.proc_start_time(p["pid"]) is None for p in recorded), down.stdout
    assert not listening(prefect_port) and not listening(mlflow_port)
    assert not (home / ".llmpath" / "stack.json").exists()
    assert "nothing up" in llmpath(env, "status").stdout


def test_no_auth_on_a_network_address_is_refused(stack_env):
    refused = llmpath(stack_env, "up", "--host", "0.0.0.0", "--no-auth", timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "error: --no-auth with --host 0.0.0.0" in refused.stderr and "Drop --no-auth" in refused.stderr
    assert "Traceback" not in refused.stderr and "started" not in refused.stdout
    assert not (Path(stack_env["LLMPATH_HOME"]) / ".llmpath").exists()
    assert not listening(int(stack_env["LLMPATH_PREFECT_PORT"]))


EVIL = "http://evil.example"


def check_closed_to_strangers(api: str, mlflow: str, prefect_port: int, client: stack.StackAPI) -> None:
    """Another web page, a client without the auth string, a request without a CSRF token: all refused."""
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    # CORS: only the stack's own origins are answered.
    evil = httpx.options(f"{api}/flow_runs/filter", headers={"Origin": EVIL, **preflight})
    assert "access-control-allow-origin" not in evil.headers, evil.headers
    own = f"http://127.0.0.1:{prefect_port}"
    allowed = httpx.options(f"{api}/flow_runs/filter", headers={"Origin": own, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == own
    assert "access-control-allow-origin" not in httpx.get(f"{api}/health", headers={"Origin": EVIL}).headers
    # The UI knows to ask for the password, to send CSRF tokens, and which API is its own.
    ui = httpx.get(f"{api.removesuffix('/api')}/ui-settings").json()
    assert (ui["auth"], ui["csrf_enabled"], ui["api_url"]) == ("BASIC", True, api)
    # Auth: no string, a wrong one, the right one.
    assert httpx.get(f"{api}/work_pools/cpu-pool").status_code == 401
    wrong = {"Authorization": stack.auth.basic_header("llmpath:guess")}
    assert httpx.get(f"{api}/work_pools/cpu-pool", headers=wrong).status_code == 401
    assert client.get("/work_pools/cpu-pool").json()["name"] == "cpu-pool"
    # CSRF: authenticated but without a token, a state-changing request is refused.
    no_token = httpx.patch(
        f"{api}/work_pools/cpu-pool", headers=dict(client.http.headers), json={"description": "changed"}
    )
    assert no_token.status_code == 403 and no_token.json() == {"detail": "Missing CSRF token."}
    assert client.get("/work_pools/cpu-pool").json()["description"] != "changed"
    assert client.post("/flow_runs/filter").status_code == 200
    # MLflow: other origins get no CORS answer and cannot write; a foreign Host header (DNS rebinding) is refused.
    search = f"{mlflow}/api/2.0/mlflow/experiments/search"
    assert (
        "access-control-allow-origin"
        not in httpx.options(search, headers={"Origin": EVIL, **preflight}).headers
    )
    create = httpx.post(
        f"{mlflow}/api/2.0/mlflow/experiments/create", json={"name": "x"}, headers={"Origin": EVIL}
    )
    assert create.status_code == 403
    assert httpx.get(search, params={"max_results": 1}, headers={"Host": "evil.example"}).status_code == 403
    assert httpx.get(search, params={"max_results": 1}).status_code == 200


def check_no_command_from_a_flow_run(client: stack.StackAPI, deployments: list[dict], tmp_path: Path) -> None:
    """A flow run cannot set the shell command the process worker runs (deployments/<pool>.json)."""
    marker = tmp_path / "pwned"
    promote = next(d for d in deployments if d["name"] == "promote")
    created = client.post(
        f"/deployments/{promote['id']}/create_flow_run",
        json={
            "parameters": {"model": "none", "version": "1", "reason": "x"},
            "job_variables": {"command": f"touch {marker}"},
        },
    )
    assert created.status_code == 422 and "'command' was unexpected" in created.text, created.text
    assert not marker.exists()


def online_workers(client: stack.StackAPI, pool: str) -> list[str]:
    workers = client.post(f"/work_pools/{pool}/workers/filter").json()
    return [w["name"] for w in workers if w["status"] == "ONLINE"]


def run_deployment(api: str, auth_string: str, name: str, parameters: dict):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth_string}):
        return run_deployment(name=name, parameters=parameters, timeout=900, poll_interval=2)


def flow_run_logs(client: stack.StackAPI, flow_run_id: str) -> list[str]:
    logs = client.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
    return [entry["message"] for entry in logs]


def newest_mlflow_run(mlflow: str, experiment: str) -> dict:
    """Through MLflow's REST API, as any client would: the newest run of the experiment, tags as a dict."""
    api = f"{mlflow}/api/2.0/mlflow"
    found = httpx.get(f"{api}/experiments/get-by-name", params={"experiment_name": experiment})
    assert found.status_code == 200, found.text
    experiment_id = found.json()["experiment"]["experiment_id"]
    runs = httpx.post(
        f"{api}/runs/search",
        json={"experiment_ids": [experiment_id], "order_by": ["attributes.start_time DESC"]},
    ).json()["runs"]
    run = runs[0]
    return {
        "run_id": run["info"]["run_id"],
        "status": run["info"]["status"],
        "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
        "params": {p["key"]: p["value"] for p in run["data"].get("params", [])},
    }


def candidate_version(mlflow: str, model: str) -> dict:
    found = httpx.get(
        f"{mlflow}/api/2.0/mlflow/registered-models/alias", params={"name": model, "alias": "candidate"}
    )
    assert found.status_code == 200, found.text
    return found.json()["model_version"]
