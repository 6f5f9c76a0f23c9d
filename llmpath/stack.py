"""`llmpath up | down | status`: the local stack that runs llmpath's deployments.

`up` starts, bound to 127.0.0.1 unless told otherwise:

1. a Prefect server (API and UI, default port 4200) with its own PREFECT_HOME under `<home>/.llmpath/prefect`
   unless the environment sets PREFECT_HOME;
2. a lean MLflow tracking server on the embedded store `<home>/mlruns` (default port 5000);
3. the work pools `cpu-pool` and `gpu-pool` from `deployments/<pool>.json`, and every deployment in `prefect.yaml`;
4. a process worker for `cpu-pool`, and one for `gpu-pool` when a GPU is present (`--gpu-worker` forces it).

Each part runs in a process group of its own, logs to `<home>/.llmpath/logs/<part>.log` and is recorded with its PID
and kernel start time in `<home>/.llmpath/stack.json`, so `down` stops exactly these processes and never a process
that later got a recycled PID. `<home>` is `llmpath.settings.project_home()`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from llmpath import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
POOLS = ("cpu-pool", "gpu-pool")
SERVER_PARTS = ("prefect-server", "mlflow")
STOP_GRACE_SECONDS = 20.0


class StackError(Exception):
    """A part could not start or is not healthy; the message names the part and its log."""


# --- configuration ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and listens."""

    home: Path
    host: str
    prefect_port: int
    mlflow_port: int
    prefect_home: Path

    @property
    def state_dir(self) -> Path:
        return self.home / ".llmpath"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def client_host(self) -> str:
        """The address clients use: a wildcard bind is reached through loopback."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def prefect_ui(self) -> str:
        return f"http://{self.client_host}:{self.prefect_port}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_ui}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"


def state_file(home: Path | None = None) -> Path:
    return (home or settings.project_home()) / ".llmpath" / "stack.json"


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackError(f"{name}={value!r} is not a port number")
    return int(value)


def config_from_args(args: argparse.Namespace, recorded: StackState | None = None) -> StackConfig:
    """Flags, then LLMPATH_HOST / LLMPATH_PREFECT_PORT / LLMPATH_MLFLOW_PORT, then a running stack's, then defaults."""
    home = settings.project_home()
    prefect_home = os.environ.get("PREFECT_HOME") or (recorded.prefect_home if recorded else None)
    return StackConfig(
        home=home,
        host=args.host or os.environ.get("LLMPATH_HOST") or (recorded.host if recorded else "127.0.0.1"),
        prefect_port=args.prefect_port
        or _env_port("LLMPATH_PREFECT_PORT", recorded.prefect_port if recorded else 4200),
        mlflow_port=args.mlflow_port
        or _env_port("LLMPATH_MLFLOW_PORT", recorded.mlflow_port if recorded else 5000),
        prefect_home=Path(prefect_home).expanduser().resolve()
        if prefect_home
        else home / ".llmpath" / "prefect",
    )


# --- recorded state -----------------------------------------------------------------------------------------


@dataclass
class Part:
    """One running process of the stack."""

    name: str
    pid: int
    start_time: int  # field 22 of /proc/PID/stat: clock ticks after boot, unique per PID incarnation
    log: str
    url: str = ""


@dataclass
class StackState:
    """What `up` started, as written to stack.json."""

    host: str
    prefect_port: int
    mlflow_port: int
    prefect_home: str
    parts: list[Part] = field(default_factory=list)

    @classmethod
    def for_config(cls, config: StackConfig) -> StackState:
        return cls(config.host, config.prefect_port, config.mlflow_port, str(config.prefect_home))

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    def replace(self, part: Part) -> None:
        self.parts = [p for p in self.parts if p.name != part.name] + [part]


def save_state(path: Path, state: StackState) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, path)


def load_state(path: Path) -> StackState | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    parts = [Part(**p) for p in data.pop("parts", [])]
    return StackState(**data, parts=parts)


# --- processes ----------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the parenthesised command name), or None if there is no such PID."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of PID (field 22), None when it does not exist or is a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(part: Part) -> bool:
    """The recorded process still runs: same PID *and* same start time (a recycled PID fails this)."""
    return proc_start_time(part.pid) == part.start_time


def owns_group(part: Part) -> bool:
    """Whether the process group PID still belongs to us.

    The group's leader is our process, or the leader is gone: Linux does not hand out a PID while a process
    group of that number still has members, so any remaining members are our leader's children.
    """
    start = proc_start_time(part.pid)
    return start is None or start == part.start_time


def descendants(pid: int) -> list[int]:
    """Every live process below PID (flow runs get a session of their own, so a group signal misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _signal(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig) if group else os.kill(pid, sig)


def stop_parts(parts: list[Part], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each part's process group and descendants; SIGKILL whatever is left after GRACE seconds."""
    ours = [p for p in parts if owns_group(p)]
    targets: dict[int, int] = {}  # pid -> start time, re-checked before SIGKILL
    for part in ours:
        for pid in descendants(part.pid) if is_alive(part) else []:
            if (start := proc_start_time(pid)) is not None:
                targets[pid] = start
        _signal(part.pid, signal.SIGTERM, group=True)
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (_any_left(ours) or _any_alive(targets)):
        time.sleep(0.2)
    for part in ours:
        _signal(part.pid, signal.SIGKILL, group=True)
    for pid, start in targets.items():
        if proc_start_time(pid) == start:
            _signal(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Some process of group PGID still runs (zombies waiting to be reaped do not count)."""
    for entry in Path("/proc").iterdir():
        fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _any_left(parts: list[Part]) -> bool:
    return any(_group_alive(p.pid) for p in parts)


def _any_alive(targets: dict[int, int]) -> bool:
    return any(proc_start_time(pid) == start for pid, start in targets.items())


def spawn(
    name: str, cmd: list[str], env: dict[str, str], config: StackConfig, url: str = ""
) -> tuple[Part, subprocess.Popen]:
    """Start CMD in a new session with output appended to its log. Returns (Part, Popen)."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== llmpath up: {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    start = proc_start_time(proc.pid)
    return Part(name, proc.pid, start if start is not None else -1, str(log_path), url), proc


# --- commands and environments ------------------------------------------------------------------------------


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def base_env(config: StackConfig) -> dict[str, str]:
    """The environment of every part: the caller's, plus the stack's Prefect home and quiet defaults."""
    env = dict(os.environ)
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
        PREFECT_WORKER_QUERY_SECONDS="2",  # poll for scheduled runs every 2 s (default 10)
        # A dead worker stays ONLINE in the API for 3 heartbeats; 10 s (default 30) lets routing notice sooner.
        PREFECT_WORKER_HEARTBEAT_SECONDS="10",
    )
    return env


def mlflow_env(config: StackConfig) -> dict[str, str]:
    env = base_env(config)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def prefect_server_cmd(config: StackConfig) -> list[str]:
    return [_bin("prefect"), "server", "start", "--host", config.host, "--port", str(config.prefect_port)]


def mlflow_cmd(config: StackConfig) -> list[str]:
    mlruns = config.home / "mlruns"
    return [
        _bin("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{mlruns / 'mlflow.db'}",
        "--default-artifact-root",
        str(mlruns / "artifacts"),
        "--host",
        config.host,
        "--port",
        str(config.mlflow_port),
        "--workers",
        "1",
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


# --- health -------------------------------------------------------------------------------------------------


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_healthy(config: StackConfig) -> bool:
    return http_ok(f"{config.prefect_api}/health")


def mlflow_healthy(config: StackConfig) -> bool:
    return http_ok(f"{config.mlflow_url}/health")


def worker_status(config: StackConfig, pool: str) -> dict | None:
    """The worker record named `llmpath-<pool>` in the Prefect API, or None."""
    try:
        response = httpx.post(f"{config.prefect_api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
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


def create_pools(config: StackConfig) -> None:
    """Create (or overwrite) cpu-pool and gpu-pool from deployments/<pool>.json."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: config.prefect_api}),
        get_client(sync_client=True) as client,
    ):
        for pool in POOLS:
            template = json.loads((REPO_ROOT / "deployments" / f"{pool}.json").read_text())
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template), overwrite=True
            )


def deploy_all(config: StackConfig, timeout: float) -> None:
    """`prefect --no-prompt deploy --all` from the repository root (where prefect.yaml lives)."""
    if not (REPO_ROOT / "prefect.yaml").is_file():
        raise StackError(f"no prefect.yaml in {REPO_ROOT}: `llmpath up` needs a checkout of the repository")
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


def gpu_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# --- up -----------------------------------------------------------------------------------------------------


def wanted_parts(gpu_worker: bool | None) -> list[str]:
    """Part names in start order; the gpu-pool worker only with a GPU unless the flag says otherwise."""
    with_gpu = gpu_present() if gpu_worker is None else gpu_worker
    return [*SERVER_PARTS, "worker-cpu-pool", *(["worker-gpu-pool"] if with_gpu else [])]


def check_port_free(host: str, port: int, flag: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise StackError(
                f"port {port} on {host} is already in use by another program ({err.strerror}). "
                f"Stop it or pick another port with {flag}."
            ) from err


def _command(name: str, config: StackConfig) -> tuple[list[str], dict[str, str], str]:
    if name == "prefect-server":
        return prefect_server_cmd(config), server_env(config), config.prefect_ui
    if name == "mlflow":
        (config.home / "mlruns" / "artifacts").mkdir(parents=True, exist_ok=True)
        return mlflow_cmd(config), mlflow_env(config), config.mlflow_url
    pool = name.removeprefix("worker-")
    return worker_cmd(pool), client_env(config), f"pool {pool}"


def start_parts(names: list[str], config: StackConfig, state: StackState, timeout: float) -> None:
    """Start NAMES (servers, then pools and deployments, then workers); wait until every recorded part is healthy.

    On failure or Ctrl-C the parts started here are stopped again and the error names the part and its log.
    """
    procs: dict[str, subprocess.Popen] = {}
    started: list[Part] = []

    def launch(name: str) -> None:
        cmd, env, url = _command(name, config)
        part, procs[name] = spawn(name, cmd, env, config, url)
        started.append(part)
        state.replace(part)
        save_state(config.state_file, state)
        print(f"  started {name} (pid {part.pid}), log {part.log}")

    try:
        for name in (n for n in names if n in SERVER_PARTS):
            launch(name)
        prefect = state.part("prefect-server")
        wait_until(prefect, health_check(config, prefect.name), timeout, procs.get(prefect.name))
        if any(n != "mlflow" for n in names):
            create_pools(config)
            deploy_all(config, timeout)
            print(f"  work pools {', '.join(POOLS)} and the deployments of prefect.yaml are in place")
        since = time.time()
        for name in (n for n in names if n.startswith("worker-")):
            launch(name)
        for part in state.parts:
            new_worker = part.name in procs and part.name.startswith("worker-")
            check = _worker_since(config, part.name, since) if new_worker else health_check(config, part.name)
            wait_until(part, check, timeout, procs.get(part.name))
    except BaseException:
        stop_parts(list(reversed(started)), grace=5)
        state.parts = [p for p in state.parts if p not in started]
        _save_or_clear(config, state)
        raise


def _worker_since(config: StackConfig, name: str, since: float) -> Callable[[], bool]:
    return lambda: worker_online(config, name.removeprefix("worker-"), since)


def _save_or_clear(config: StackConfig, state: StackState) -> None:
    if state.parts:
        save_state(config.state_file, state)
    else:
        config.state_file.unlink(missing_ok=True)


def _same_address(config: StackConfig, state: StackState) -> bool:
    return (state.host, state.prefect_port, state.mlflow_port) == (
        config.host,
        config.prefect_port,
        config.mlflow_port,
    )


def _parts_to_start(config: StackConfig, state: StackState, wanted: list[str]) -> list[str]:
    """Wanted parts that are not running (alive recorded parts are kept); the servers' ports must be free."""
    dead = [p.name for p in state.parts if not is_alive(p)]
    if dead:
        print(f"recorded but no longer running: {', '.join(dead)}")
    state.parts = [p for p in state.parts if is_alive(p)]
    alive = {p.name for p in state.parts}
    todo = [n for n in wanted if n not in alive]
    ports = {
        "prefect-server": (config.prefect_port, "--prefect-port"),
        "mlflow": (config.mlflow_port, "--mlflow-port"),
    }
    for name in (n for n in todo if n in ports):
        check_port_free(config.host, *ports[name])
    return todo


def print_urls(config: StackConfig) -> None:
    print(f"Prefect UI:  {config.prefect_ui}")
    print(f"MLflow UI:   {config.mlflow_url}")
    print(
        "Next: llmpath trigger recipes/classify-sst2-smoke.yaml   (runs on the cpu-pool worker; or from the UI:\n"
        "      Deployments > classify > Run). `llmpath status` checks the stack, `llmpath down` stops it."
    )


def resolve_state(args: argparse.Namespace) -> tuple[StackConfig, StackState]:
    """The configuration and the state to build on: the running stack's, or a fresh one if nothing runs."""
    previous = load_state(state_file())
    running = previous if previous and any(is_alive(p) for p in previous.parts) else None
    config = config_from_args(args, running)
    if running and not _same_address(config, running):
        raise StackError(
            f"a stack is already up on {running.host} (Prefect :{running.prefect_port}, "
            f"MLflow :{running.mlflow_port}). Run `llmpath down` first to move it."
        )
    if previous and not running and previous.parts:
        print(f"recorded but no longer running: {', '.join(p.name for p in previous.parts)}")
    return config, running or StackState.for_config(config)


def cmd_up(args: argparse.Namespace) -> int:
    """Start Prefect, MLflow, the work pools, the deployments and the workers (see `llmpath up -h`)."""
    config, state = resolve_state(args)
    todo = _parts_to_start(config, state, wanted_parts(args.gpu_worker))
    if not todo and all(health_check(config, p.name)() for p in state.parts):
        print("llmpath stack already up.")
        print_urls(config)
        return 0
    print(f"starting {', '.join(todo) or 'nothing: waiting for the running parts'} (home {config.home})")
    start_parts(todo, config, state, args.timeout)
    print("llmpath stack up.")
    if not os.environ.get("LLMPATH_DATA_DIR"):
        print("note: LLMPATH_DATA_DIR is not set, so flows cannot resolve relative dataset paths in recipes.")
    print_urls(config)
    return 0


# --- down and status ----------------------------------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the processes `llmpath up` started (workers first, then the servers)."""
    path = state_file()
    state = load_state(path)
    if state is None or not state.parts:
        print(f"nothing up (no {path}).")
        path.unlink(missing_ok=True)
        return 0
    workers = [p for p in state.parts if p.name.startswith("worker-")]
    servers = [p for p in state.parts if p not in workers]
    for group in (workers, servers):  # a worker whose server is gone retries for a long time before it exits
        for part in group:
            print(f"stopping {part.name} (pid {part.pid}){'' if is_alive(part) else ': already gone'}")
        stop_parts(group, grace=args.grace)
    path.unlink(missing_ok=True)
    print(f"stopped {len(state.parts)} part(s); logs stay in {path.parent / 'logs'}")
    return 0


def part_health(config: StackConfig, part: Part) -> str:
    if not is_alive(part):
        return "not running"
    if part.name.startswith("worker-"):
        worker = worker_status(config, part.name.removeprefix("worker-"))
        return f"worker {worker['status'] if worker else 'not registered'}"
    return "healthy" if health_check(config, part.name)() else "NOT answering"


def cmd_status(args: argparse.Namespace) -> int:
    """Show each part of the stack: PID, alive or not, URL and health. Exit 0 only when all are up."""
    path = state_file()
    state = load_state(path)
    if state is None or not state.parts:
        print("nothing up. Start the stack: llmpath up")
        return 1
    config = StackConfig(
        settings.project_home(), state.host, state.prefect_port, state.mlflow_port, Path(state.prefect_home)
    )
    ok = True
    for part in state.parts:
        health = part_health(config, part)
        ok &= health in ("healthy", "worker ONLINE")
        alive = "alive" if is_alive(part) else "dead"
        print(f"{part.name:<16} pid {part.pid:<8} {alive:<6} {part.url:<24} {health}")
    return 0 if ok else 1


# --- argparse -----------------------------------------------------------------------------------------------


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StackError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


def add_commands(sub) -> None:
    """Register `up`, `down` and `status` on the CLI's subparsers."""
    up = sub.add_parser(
        "up", help=cmd_up.__doc__, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    up.add_argument("--host", help="address to bind (env LLMPATH_HOST, default 127.0.0.1)")
    up.add_argument(
        "--prefect-port", type=int, help="Prefect API and UI port (env LLMPATH_PREFECT_PORT, default 4200)"
    )
    up.add_argument("--mlflow-port", type=int, help="MLflow port (env LLMPATH_MLFLOW_PORT, default 5000)")
    gpu = up.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu-worker",
        dest="gpu_worker",
        action="store_true",
        default=None,
        help="start the gpu-pool worker even without a GPU",
    )
    gpu.add_argument(
        "--no-gpu-worker", dest="gpu_worker", action="store_false", help="no gpu-pool worker even with a GPU"
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds each part may take to be healthy")
    up.set_defaults(func=_guard(cmd_up))
    down = sub.add_parser("down", help=cmd_down.__doc__)
    down.add_argument("--grace", type=float, default=STOP_GRACE_SECONDS, help="seconds before SIGKILL")
    down.set_defaults(func=_guard(cmd_down))
    status = sub.add_parser("status", help=cmd_status.__doc__)
    status.set_defaults(func=_guard(cmd_status))
