"""The parts of the stack: their commands and environments, their health, the pools and the deployments.

Safe by default: Prefect answers cross-origin requests only from the stack's own origins, refuses state-changing
requests without a CSRF token, and asks for the auth string unless `up --no-auth` (loopback only). MLflow binds
to loopback and accepts only its own Host header and the stack's origins.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from llmpath.stack.auth import StackAPI
from llmpath.stack.config import MLFLOW_HOST, StackConfig, StackError
from llmpath.stack.procs import REPO_ROOT, is_alive
from llmpath.stack.state import Part

POOLS = ("cpu-pool", "gpu-pool")
SERVER_PARTS = ("prefect-server", "mlflow")
# Secrets for some other Prefect server must not reach this stack's processes (nor be sent to it).
_FOREIGN_SECRETS = ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_KEY")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def base_env(config: StackConfig) -> dict[str, str]:
    """The environment of every part: the caller's, plus the stack's Prefect home and quiet defaults."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_SECRETS}
    env.update(
        PREFECT_HOME=str(config.prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def server_env(config: StackConfig) -> dict[str, str]:
    env = base_env(config)
    env.pop("PREFECT_API_URL", None)  # the server serves the API; a URL to another one only confuses its logs
    # The UI calls the API at this URL. Prefect derives it from its settings, not from `--port`, so without it
    # a UI on another port talks to whatever runs on :4200. Behind a proxy, set PREFECT_UI_API_URL yourself.
    env.setdefault("PREFECT_UI_API_URL", config.prefect_api)
    env.update(
        # Set, not defaulted: a `*` left in the caller's environment would open the API to every web page.
        PREFECT_SERVER_CORS_ALLOWED_ORIGINS=",".join(config.origins()),
        PREFECT_SERVER_CSRF_PROTECTION_ENABLED="true",
    )
    if config.auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = config.auth_string
    return env


def client_env(config: StackConfig) -> dict[str, str]:
    """For `prefect deploy` and the workers: what the flows need to reach this stack and share results."""
    env = base_env(config)
    env.update(
        PREFECT_API_URL=config.prefect_api,
        MLFLOW_TRACKING_URI=config.mlflow_url,
        LLMPATH_HOME=str(config.home),
        PREFECT_LOCAL_STORAGE_PATH=str(config.prefect_home / "storage"),
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
        PREFECT_CLIENT_CSRF_SUPPORT_ENABLED="true",  # the server refuses changes without a token
        PREFECT_WORKER_QUERY_SECONDS="2",  # poll for scheduled runs every 2 s (default 10)
        # A dead worker stays ONLINE in the API for 3 heartbeats; 10 s (default 30) lets routing notice sooner.
        PREFECT_WORKER_HEARTBEAT_SECONDS="10",
    )
    if config.auth_string:  # flow runs inherit it from their worker: they report to the API too
        env["PREFECT_API_AUTH_STRING"] = config.auth_string
    return env


def mlflow_env(config: StackConfig) -> dict[str, str]:
    env = base_env(config)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def prefect_server_cmd(config: StackConfig) -> list[str]:
    return [_bin("prefect"), "server", "start", "--host", config.host, "--port", str(config.prefect_port)]


def mlflow_cmd(config: StackConfig) -> list[str]:
    """MLflow on loopback whatever `--host` says: its tracking API takes writes from anyone who reaches it and
    `mlflow server` speaks plain HTTP, so even its basic-auth app would send passwords in the clear. Across
    machines, put a TLS proxy with auth in front of it or run a tracking server of your own (README)."""
    mlruns = config.home / "mlruns"
    port = str(config.mlflow_port)
    return [
        _bin("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{mlruns / 'mlflow.db'}",
        "--default-artifact-root",
        str(mlruns / "artifacts"),
        "--host",
        MLFLOW_HOST,
        "--port",
        port,
        "--workers",
        "1",
        # Host header check (DNS rebinding): only the names this loopback server is reached by.
        "--allowed-hosts",
        f"{MLFLOW_HOST}:{port},localhost:{port}",
        "--cors-allowed-origins",
        ",".join(config.origins()),
    ]


def worker_name(pool: str) -> str:
    return f"llmpath-{pool}"


def worker_cmd(pool: str) -> list[str]:
    return [
        _bin("prefect"),
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        "process",
        "--name",
        worker_name(pool),
    ]


def command_of(name: str, config: StackConfig) -> tuple[list[str], dict[str, str], str]:
    """(command, environment, URL shown by `status`) of the part NAME."""
    if name == "prefect-server":
        return prefect_server_cmd(config), server_env(config), config.prefect_ui
    if name == "mlflow":
        (config.home / "mlruns" / "artifacts").mkdir(parents=True, exist_ok=True)
        return mlflow_cmd(config), mlflow_env(config), config.mlflow_url
    pool = name.removeprefix("worker-")
    return worker_cmd(pool), client_env(config), f"pool {pool}"


# --- health -------------------------------------------------------------------------------------------------


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_healthy(config: StackConfig) -> bool:
    return http_ok(f"{config.prefect_api}/health")  # the one route Prefect answers without auth


def mlflow_healthy(config: StackConfig) -> bool:
    return http_ok(f"{config.mlflow_url}/health")


@functools.lru_cache(maxsize=4)
def stack_api(config: StackConfig) -> StackAPI:
    """One client per stack and process, so polling reuses one CSRF token instead of minting one per call."""
    return StackAPI(config)


def worker_status(config: StackConfig, pool: str) -> dict | None:
    """The worker record named `llmpath-<pool>` in the Prefect API, or None."""
    try:
        response = stack_api(config).post(f"/work_pools/{pool}/workers/filter")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return next((w for w in response.json() if w["name"] == worker_name(pool)), None)


def worker_online(config: StackConfig, pool: str, since: float = 0.0) -> bool:
    """ONLINE, with a heartbeat after `since` (epoch seconds) so a record left by a dead worker does not count."""
    worker = worker_status(config, pool)
    if not worker or worker["status"] != "ONLINE":
        return False
    beat = datetime.fromisoformat(worker["last_heartbeat_time"].replace("Z", "+00:00")).timestamp()
    return beat >= since - 2.0


def wait_until(part: Part, check: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None):
    """Poll CHECK until true; fail early if the process exits, or after TIMEOUT seconds, naming the log."""
    deadline = time.monotonic() + timeout
    while not check():
        exited = proc.poll() if proc is not None else (None if is_alive(part) else "?")
        if exited is not None:
            raise StackError(
                f"{part.name} exited (code {exited}) before it was healthy. See its log: {part.log}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"{part.name} not healthy after {timeout:.0f} s. See its log: {part.log}")
        time.sleep(0.5)


def health_check(config: StackConfig, name: str) -> Callable[[], bool]:
    if name == "prefect-server":
        return lambda: prefect_healthy(config)
    if name == "mlflow":
        return lambda: mlflow_healthy(config)
    return lambda: worker_online(config, name.removeprefix("worker-"))


# --- pools and deployments ----------------------------------------------------------------------------------


def pool_template(pool: str) -> dict:
    """deployments/<pool>.json: the base job template, whose command a flow run cannot set (see its README)."""
    return json.loads((REPO_ROOT / "deployments" / f"{pool}.json").read_text())


def create_pools(config: StackConfig) -> None:
    """Create (or overwrite) cpu-pool and gpu-pool from deployments/<pool>.json."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: config.prefect_api}
    if config.auth_string:
        updates[PREFECT_API_AUTH_STRING] = config.auth_string
    restore = [] if config.auth_string else [PREFECT_API_AUTH_STRING]
    with (
        temporary_settings(updates=updates, restore_defaults=restore),
        get_client(sync_client=True) as client,
    ):
        for pool in POOLS:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=pool_template(pool)),
                overwrite=True,
            )


def deploy_all(config: StackConfig, timeout: float) -> None:
    """`prefect --no-prompt deploy --all` from the repository root (where prefect.yaml lives)."""
    if not (REPO_ROOT / "prefect.yaml").is_file():
        raise StackError(f"no prefect.yaml in {REPO_ROOT}: `llmpath up` needs a checkout of the repository")
    warn_stale_deployments()
    log_path = config.log_dir / "deploy.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== llmpath up: {time.strftime('%Y-%m-%d %H:%M:%S')} prefect deploy --all\n".encode())
        log.flush()
        cmd = [_bin("prefect"), "--no-prompt", "deploy", "--all"]
        try:
            code = subprocess.run(
                cmd,
                cwd=REPO_ROOT,
                env=client_env(config),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0:
        raise StackError(f"prefect deploy --all failed ({code}). See its log: {log_path}")


def warn_stale_deployments() -> None:
    """Say so when prefect.yaml's recipe deployments no longer match recipes/ (they deploy as they are)."""
    from llmpath.stack import deployments

    try:
        if deployments.stale():
            print(
                "  note: prefect.yaml's recipe deployments differ from recipes/ (their defaults are the old "
                "recipes): run `make deployments`, then `llmpath up` again"
            )
    except (deployments.DeploymentsError, ValueError) as err:
        print(f"  note: cannot compare prefect.yaml's recipe deployments with recipes/: {err}")


def gpu_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
