"""`llmpath up | down | status`: start, stop and check the stack (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from llmpath.stack import auth, parts
from llmpath.stack.config import (
    MLFLOW_HOST,
    StackConfig,
    StackError,
    StackUsageError,
    config_from_args,
    config_of,
    is_loopback,
)
from llmpath.stack.procs import STOP_GRACE_SECONDS, is_alive, spawn, stop_parts
from llmpath.stack.state import Part, StackState, load_state, save_state, state_file

# --- up -----------------------------------------------------------------------------------------------------


def wanted_parts(gpu_worker: bool | None) -> list[str]:
    """Part names in start order; the gpu-pool worker only with a GPU unless the flag says otherwise."""
    with_gpu = parts.gpu_present() if gpu_worker is None else gpu_worker
    return [*parts.SERVER_PARTS, "worker-cpu-pool", *(["worker-gpu-pool"] if with_gpu else [])]


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


def start_parts(names: list[str], config: StackConfig, state: StackState, timeout: float) -> None:
    """Start NAMES (servers, then pools and deployments, then workers); wait until every recorded part is healthy.

    On failure or Ctrl-C the parts started here are stopped again and the error names the part and its log.
    """
    procs: dict[str, subprocess.Popen] = {}
    started: list[Part] = []

    def launch(name: str) -> None:
        cmd, env, url = parts.command_of(name, config)
        part, procs[name] = spawn(name, cmd, env, config.log_dir, url)
        started.append(part)
        state.replace(part)
        save_state(config.state_file, state)
        print(f"  started {name} (pid {part.pid}), log {part.log}")

    try:
        for name in (n for n in names if n in parts.SERVER_PARTS):
            launch(name)
        prefect = state.part("prefect-server")
        parts.wait_until(prefect, parts.health_check(config, prefect.name), timeout, procs.get(prefect.name))
        if any(n != "mlflow" for n in names):
            parts.create_pools(config)
            parts.deploy_all(config, timeout)
            print(f"  work pools {', '.join(parts.POOLS)} and the deployments of prefect.yaml are in place")
        since = time.time()
        for name in (n for n in names if n.startswith("worker-")):
            launch(name)
        for part in state.parts:
            new_worker = part.name in procs and part.name.startswith("worker-")
            check = (
                _worker_since(config, part.name, since)
                if new_worker
                else parts.health_check(config, part.name)
            )
            parts.wait_until(part, check, timeout, procs.get(part.name))
    except BaseException:
        stop_parts(list(reversed(started)), grace=5)
        state.parts = [p for p in state.parts if p not in started]
        _save_or_clear(config, state)
        raise


def _worker_since(config: StackConfig, name: str, since: float) -> Callable[[], bool]:
    return lambda: parts.worker_online(config, name.removeprefix("worker-"), since)


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
        "prefect-server": (config.host, config.prefect_port, "--prefect-port"),
        "mlflow": (MLFLOW_HOST, config.mlflow_port, "--mlflow-port"),
    }
    for name in (n for n in todo if n in ports):
        check_port_free(*ports[name])
    return todo


def print_urls(config: StackConfig) -> None:
    print(f"Prefect UI:  {config.prefect_ui}")
    print(f"MLflow UI:   {config.mlflow_url}")
    if config.auth:
        print(
            f"Prefect API auth is on: the UI asks for a password, paste the line of {config.auth_file}.\n"
            "  llmpath trigger/run/status use it; for Prefect's CLI: "
            f'export PREFECT_API_AUTH_STRING="$(cat {config.auth_file})"'
        )
    if not is_loopback(config.host):
        print(
            f"Prefect listens on {config.host} (plain HTTP: use a trusted network or a TLS proxy in front; for "
            "browsers on other machines, set PREFECT_UI_API_URL to the API's address there before `up`). "
            f"MLflow stays on {MLFLOW_HOST}: to reach it from elsewhere put a TLS proxy with auth in front of "
            "it (see README, Operating safely)."
        )
    print(
        "Next: llmpath trigger recipes/classify-sst2-smoke.yaml   (runs on the cpu-pool worker; or from the UI:\n"
        "      Deployments > sst2-smoke > Run > Quick run). `llmpath status` checks the stack, `llmpath down` stops it."
    )


def resolve_state(args: argparse.Namespace) -> tuple[StackConfig, StackState]:
    """The configuration (with its auth string) and the state to build on: the running stack's, or a fresh one."""
    previous = load_state(state_file())
    running = previous if previous and any(is_alive(p) for p in previous.parts) else None
    config = config_from_args(args, running)
    use_auth = not getattr(args, "no_auth", False)
    if not use_auth and not is_loopback(config.host):
        raise StackUsageError(
            f"--no-auth with --host {config.host}: anyone on the network could run code on the workers "
            "through Prefect's API. Drop --no-auth (an auth string is generated and kept in "
            f"{config.auth_file}) or bind 127.0.0.1."
        )
    if running and not _same_address(config, running):
        raise StackError(
            f"a stack is already up on {running.host} (Prefect :{running.prefect_port}, "
            f"MLflow :{running.mlflow_port}). Run `llmpath down` first to move it."
        )
    if running and running.auth != use_auth:
        raise StackError(
            f"a stack is already up {'with' if running.auth else 'without'} auth. "
            "Run `llmpath down` first to change that."
        )
    if previous and not running and previous.parts:
        print(f"recorded but no longer running: {', '.join(p.name for p in previous.parts)}")
    config = config.with_auth(auth.create_auth(config.auth_file) if use_auth else None)
    return config, running or StackState.for_config(config)


def cmd_up(args: argparse.Namespace) -> int:
    """Start Prefect, MLflow, the work pools, the deployments and the workers (see `llmpath up -h`)."""
    config, state = resolve_state(args)
    todo = _parts_to_start(config, state, wanted_parts(args.gpu_worker))
    if not todo and all(parts.health_check(config, p.name)() for p in state.parts):
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
        worker = parts.worker_status(config, part.name.removeprefix("worker-"))
        return f"worker {worker['status'] if worker else 'not registered'}"
    return "healthy" if parts.health_check(config, part.name)() else "NOT answering"


def cmd_status(args: argparse.Namespace) -> int:
    """Show each part of the stack: PID, alive or not, URL and health. Exit 0 only when all are up."""
    path = state_file()
    state = load_state(path)
    if state is None or not state.parts:
        print("nothing up. Start the stack: llmpath up")
        return 1
    config = auth.recorded_auth(config_of(state), state.auth)
    ok = True
    for part in state.parts:
        health = part_health(config, part)
        ok &= health in ("healthy", "worker ONLINE")
        alive = "alive" if is_alive(part) else "dead"
        print(f"{part.name:<16} pid {part.pid:<8} {alive:<6} {part.url:<24} {health}")
    print(f"Prefect API auth: {'on' if state.auth else 'OFF (--no-auth)'}")
    return 0 if ok else 1


# --- argparse -----------------------------------------------------------------------------------------------


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StackError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2 if isinstance(err, StackUsageError) else 1

    return run


def add_commands(sub, description: str = "") -> None:
    """Register `up`, `down` and `status` on the CLI's subparsers."""
    up = sub.add_parser(
        "up", help=cmd_up.__doc__, description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    up.add_argument("--host", help="address Prefect binds (env LLMPATH_HOST, default 127.0.0.1)")
    up.add_argument(
        "--prefect-port", type=int, help="Prefect API and UI port (env LLMPATH_PREFECT_PORT, default 4200)"
    )
    up.add_argument("--mlflow-port", type=int, help="MLflow port (env LLMPATH_MLFLOW_PORT, default 5000)")
    up.add_argument(
        "--no-auth",
        action="store_true",
        help="no Prefect API auth string (loopback only: any user of this machine may then drive the API)",
    )
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
