"""The stack's processes: start each in a session of its own, tell ours from a recycled PID, stop them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from llmpath.stack.state import Part

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 20.0
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def proc_start_time(pid: int) -> int | None:
    """Start time of PID in clock ticks after boot; None when it is gone, a zombie or not ours to inspect.

    psutil's create_time less the boot time: on Linux that is field 22 of /proc/PID/stat exactly (stack.json
    files written before psutil still match), and the boot time cancels out, so a clock set by NTP between
    `up` and `down` does not make our own process look like a stranger.
    """
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() in _GONE:
            return None
        return round((proc.create_time() - psutil.boot_time()) * _TICKS_PER_SECOND)
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
        return None


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
    """Every process below PID (flow runs get a session of their own, so a group signal misses them)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        if proc.info["ppid"] is not None:
            children.setdefault(proc.info["ppid"], []).append(proc.pid)
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
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if proc.info["status"] not in _GONE and os.getpgid(proc.pid) == pgid:
                return True
    return False


def _any_left(parts: list[Part]) -> bool:
    return any(_group_alive(p.pid) for p in parts)


def _any_alive(targets: dict[int, int]) -> bool:
    return any(proc_start_time(pid) == start for pid, start in targets.items())


def spawn(
    name: str, cmd: list[str], env: dict[str, str], log_dir: Path, url: str = ""
) -> tuple[Part, subprocess.Popen]:
    """Start CMD in a new session with output appended to its log. Returns (Part, Popen).

    Secrets reach CMD through ENV only: the command line is written to the log (and `ps` shows it to anyone).
    """
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
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
