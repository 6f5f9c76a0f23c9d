"""Pure logic of `llmpath up/down/status`: recorded state, the PID-reuse guard, stopping, ports, configuration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpath import stack
from llmpath.cli import build_parser, main
from llmpath.stack import commands

pytestmark = pytest.mark.unit


def sleeper(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def part_of(proc: subprocess.Popen, name: str = "x", start_time: int | None = None) -> stack.Part:
    start = stack.proc_start_time(proc.pid) if start_time is None else start_time
    return stack.Part(name, proc.pid, start, log="x.log")


def test_state_round_trip(tmp_path):
    state = stack.StackState("127.0.0.1", 4200, 5000, str(tmp_path / "prefect"))
    state.replace(stack.Part("mlflow", 12, 34, "m.log", "http://127.0.0.1:5000"))
    state.replace(stack.Part("mlflow", 56, 78, "m.log", "http://127.0.0.1:5000"))
    path = tmp_path / ".llmpath" / "stack.json"
    stack.save_state(path, state)
    assert stack.load_state(path) == state
    assert [p.pid for p in state.parts] == [56]
    assert [f.name for f in path.parent.iterdir()] == ["stack.json"]
    assert stack.load_state(tmp_path / "missing.json") is None


def test_a_recycled_pid_is_not_ours():
    proc = sleeper()
    try:
        assert stack.is_alive(part_of(proc))
        recycled = part_of(proc, start_time=stack.proc_start_time(proc.pid) - 1)
        assert not stack.is_alive(recycled) and not stack.owns_group(recycled)
        stack.stop_parts([recycled], grace=0.5)
        assert proc.poll() is None, "stop_parts signalled a process that is not the recorded one"
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_pid_is_not_alive_and_its_group_is_ours():
    proc = sleeper("pass")
    part = part_of(proc)
    proc.wait()
    assert stack.proc_start_time(proc.pid) is None
    assert not stack.is_alive(part) and stack.owns_group(part)


def test_stop_kills_a_stubborn_group_and_a_child_in_its_own_session():
    # The leader ignores SIGTERM; its child runs in a session of its own, like a Prefect flow-run process.
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
        "time.sleep(60)"
    )
    proc = sleeper(code)
    part = part_of(proc)
    deadline = time.monotonic() + 10
    while not stack.descendants(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = stack.descendants(proc.pid)
    assert os.getpgid(child) != proc.pid
    started = time.monotonic()
    stack.stop_parts([part], grace=1.0)
    proc.wait(5)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 5
    time.sleep(0.2)
    assert stack.proc_start_time(child) is None


def test_a_taken_port_names_the_port_and_the_flag():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(stack.StackError, match=rf"port {port} .*--mlflow-port"):
            stack.check_port_free("127.0.0.1", port, "--mlflow-port")
    stack.check_port_free("127.0.0.1", port, "--mlflow-port")


def parse(*argv: str):
    return build_parser().parse_args(["up", *argv])


def test_flags_beat_environment_beats_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    for var in ("LLMPATH_HOST", "LLMPATH_PREFECT_PORT", "LLMPATH_MLFLOW_PORT", "PREFECT_HOME"):
        monkeypatch.delenv(var, raising=False)
    config = stack.config_from_args(parse())
    assert (config.host, config.prefect_port, config.mlflow_port) == ("127.0.0.1", 4200, 5000)
    assert config.prefect_home == tmp_path / ".llmpath" / "prefect"
    monkeypatch.setenv("LLMPATH_PREFECT_PORT", "4300")
    monkeypatch.setenv("LLMPATH_HOST", "0.0.0.0")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "mine"))
    config = stack.config_from_args(parse("--mlflow-port", "5100"))
    assert (config.host, config.prefect_port, config.mlflow_port) == ("0.0.0.0", 4300, 5100)
    assert config.prefect_api == "http://127.0.0.1:4300/api" and config.prefect_home == tmp_path / "mine"
    assert stack.config_from_args(parse("--prefect-port", "4400")).prefect_port == 4400
    monkeypatch.setenv("LLMPATH_MLFLOW_PORT", "fivethousand")
    with pytest.raises(stack.StackError, match="LLMPATH_MLFLOW_PORT"):
        stack.config_from_args(parse())


def test_a_running_stack_keeps_its_address_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    for var in ("LLMPATH_HOST", "LLMPATH_PREFECT_PORT", "LLMPATH_MLFLOW_PORT", "PREFECT_HOME"):
        monkeypatch.delenv(var, raising=False)
    recorded = stack.StackState("127.0.0.1", 4311, 5311, "/elsewhere/prefect")
    config = stack.config_from_args(parse(), recorded)
    assert (config.prefect_port, config.mlflow_port, config.prefect_home) == (
        4311,
        5311,
        Path("/elsewhere/prefect"),
    )
    assert not commands._same_address(
        stack.config_from_args(parse("--mlflow-port", "5000"), recorded), recorded
    )


def test_workers_get_what_the_flows_need(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPATH_DATA_DIR", "/data")
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    config = stack.StackConfig(tmp_path, "127.0.0.1", 4201, 5001, tmp_path / "ph")
    env = stack.client_env(config)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4201/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5001"
    assert env["LLMPATH_HOME"] == str(tmp_path) and env["LLMPATH_DATA_DIR"] == "/data"
    assert env["PREFECT_LOCAL_STORAGE_PATH"] == str(tmp_path / "ph" / "storage")
    assert env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true" and env["PREFECT_HOME"] == str(tmp_path / "ph")
    assert "PREFECT_API_URL" not in stack.server_env(config)
    assert stack.mlflow_env(config)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "PREFECT_API_AUTH_STRING" not in env  # no auth string in this config: none is invented


def test_the_auth_string_reaches_the_server_and_the_workers_only(monkeypatch, tmp_path):
    # Left over from another server, and a wide-open CORS setting from some tutorial: neither may get through.
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "someone:else")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_other")
    monkeypatch.setenv("PREFECT_SERVER_CORS_ALLOWED_ORIGINS", "*")
    monkeypatch.delenv("PREFECT_UI_API_URL", raising=False)
    secret = "llmpath:s3cret-value"
    config = stack.StackConfig(tmp_path, "127.0.0.1", 4201, 5001, tmp_path / "ph", secret)
    assert secret not in repr(config) and "s3cret" not in str(config)
    server, worker, mlflow = stack.server_env(config), stack.client_env(config), stack.mlflow_env(config)
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == secret and "PREFECT_API_AUTH_STRING" not in server
    assert worker["PREFECT_API_AUTH_STRING"] == secret and "PREFECT_SERVER_API_AUTH_STRING" not in worker
    assert "PREFECT_API_KEY" not in worker and "PREFECT_API_KEY" not in server
    assert not any("s3cret" in value or value == "someone:else" for value in mlflow.values())
    assert server["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"] == "true"
    assert server["PREFECT_UI_API_URL"] == "http://127.0.0.1:4201/api"  # the UI's own API, not :4200
    assert worker["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] == "true"
    assert server["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"].split(",") == [
        "http://127.0.0.1:4201",
        "http://localhost:4201",
        "http://127.0.0.1:5001",
        "http://localhost:5001",
    ]
    # Commands are written to logs and shown by `ps`: the secret is never on one.
    cmds = [stack.mlflow_cmd(config), *(commands.parts.command_of(n, config)[0] for n in ("prefect-server",))]
    assert not any("s3cret" in arg for cmd in cmds for arg in cmd)


def test_mlflow_stays_on_loopback_and_checks_host_and_origin(tmp_path):
    config = stack.StackConfig(tmp_path, "0.0.0.0", 4201, 5001, tmp_path / "ph", "llmpath:x")
    cmd = stack.mlflow_cmd(config)
    flag = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
    assert flag["--host"] == "127.0.0.1" and config.mlflow_url == "http://127.0.0.1:5001"
    assert flag["--allowed-hosts"] == "127.0.0.1:5001,localhost:5001"
    assert (
        "*" not in flag["--cors-allowed-origins"]
        and "http://127.0.0.1:4201" in flag["--cors-allowed-origins"]
    )
    concrete = stack.StackConfig(tmp_path, "10.1.2.3", 4201, 5001, tmp_path / "ph")
    assert "http://10.1.2.3:4201" in concrete.origins() and "http://10.1.2.3:5001" not in concrete.origins()


def test_loopback_hosts():
    assert all(stack.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1"))
    assert not any(
        stack.is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "myhost", "127.0.0.1.evil")
    )


def test_the_auth_file_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / ".llmpath" / "prefect-auth"
    first = stack.create_auth(path)
    assert first.startswith("llmpath:") and len(first) > len("llmpath:") + 40
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o077 == 0
    assert stack.create_auth(path) == first == stack.read_auth(path)  # kept across `up`s
    path.chmod(0o644)
    assert stack.read_auth(path) == first and path.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other"
    assert stack.create_auth(other) != first  # random, not derived from anything


def test_an_auth_file_that_is_a_link_or_empty_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("llmpath:planted\n")
    link = tmp_path / "prefect-auth"
    link.symlink_to(target)
    with pytest.raises(stack.StackError, match="not a plain file"):
        stack.create_auth(link)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(stack.StackError, match="does not hold an auth string"):
        stack.read_auth(empty)
    with pytest.raises(stack.StackError, match="run `llmpath up`"):
        stack.read_auth(tmp_path / "missing")


def test_no_auth_on_a_network_host_exits_2_and_starts_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    for var in ("LLMPATH_HOST", "LLMPATH_PREFECT_PORT", "LLMPATH_MLFLOW_PORT", "PREFECT_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert main(["up", "--host", "0.0.0.0", "--no-auth"]) == 2
    err = capsys.readouterr().err
    assert "--no-auth with --host 0.0.0.0" in err and "Drop --no-auth" in err
    assert not (tmp_path / ".llmpath").exists()
    # On loopback --no-auth is allowed: no auth file, the state says so.
    config, state = stack.resolve_state(parse("--no-auth"))
    assert config.auth_string is None and state.auth is False and not config.auth_file.exists()
    config, state = stack.resolve_state(parse("--host", "0.0.0.0"))
    assert config.auth_string == stack.read_auth(config.auth_file) and state.auth is True


def test_gpu_worker_flags():
    assert parse().gpu_worker is None
    assert stack.wanted_parts(True)[-1] == "worker-gpu-pool"
    assert "worker-gpu-pool" not in stack.wanted_parts(parse("--no-gpu-worker").gpu_worker)
    with pytest.raises(SystemExit):
        parse("--gpu-worker", "--no-gpu-worker")


def test_up_builds_on_a_running_stack_and_starts_afresh_after_a_dead_one(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    for var in ("LLMPATH_HOST", "LLMPATH_PREFECT_PORT", "LLMPATH_MLFLOW_PORT", "PREFECT_HOME"):
        monkeypatch.delenv(var, raising=False)
    me = stack.Part("mlflow", os.getpid(), stack.proc_start_time(os.getpid()), "m.log")
    dead = stack.Part("prefect-server", me.pid, me.start_time - 1, "p.log")
    recorded = stack.StackState("127.0.0.1", 4311, 5311, str(tmp_path / "ph"), parts=[dead])
    stack.save_state(stack.state_file(), recorded)
    config, state = stack.resolve_state(parse("--prefect-port", "4400"))
    assert (state.prefect_port, state.mlflow_port, state.parts) == (4400, 5000, [])
    recorded.parts = [me, dead]
    stack.save_state(stack.state_file(), recorded)
    config, state = stack.resolve_state(parse())
    assert state.prefect_port == config.prefect_port == 4311 and state.parts == [me, dead]
    assert commands._parts_to_start(config, state, ["mlflow", "prefect-server"]) == ["prefect-server"]
    with pytest.raises(stack.StackError, match="llmpath down"):
        stack.resolve_state(parse("--prefect-port", "4400"))
