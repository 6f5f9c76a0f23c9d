"""The stack's processes: start each in a session of its own, tell ours from a recycled PID, stop them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from llmpath.stack.state import Part

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 20.0


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
