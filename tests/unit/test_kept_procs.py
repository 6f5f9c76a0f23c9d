"""Processes through psutil: stack.json's start times, zombies, process groups, gc's open paths."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpath import gc, stack
from llmpath.stack import procs

pytestmark = pytest.mark.unit


def child(code: str = "import time; time.sleep(60)", **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True, **kwargs)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux: compares with /proc/PID/stat")
def test_start_time_is_field_22_of_proc_stat():
    # stack.json files written when we read /proc ourselves must still name the same processes.
    for pid in (1, os.getpid()):
        raw = Path(f"/proc/{pid}/stat").read_text()
        assert stack.proc_start_time(pid) == int(raw[raw.rindex(")") + 2 :].split()[19])


def test_no_start_time_for_a_missing_pid_a_zombie_or_a_nonsense_pid():
    assert stack.proc_start_time(0) is None and stack.proc_start_time(-5) is None
    proc = child("pass")
    deadline = time.monotonic() + 10
    while procs.psutil.Process(proc.pid).status() != procs.psutil.STATUS_ZOMBIE:  # exited, not reaped
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.02)
    assert stack.proc_start_time(proc.pid) is None
    assert not procs._group_alive(proc.pid), "a zombie kept its group alive"
    proc.wait()
    assert stack.proc_start_time(proc.pid) is None


def test_group_and_descendants():
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    proc = child(code)
    try:
        deadline = time.monotonic() + 10
        while not stack.descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (grandchild,) = stack.descendants(proc.pid)
        assert os.getpgid(grandchild) == proc.pid and procs._group_alive(proc.pid)
        assert stack.descendants(grandchild) == [] and stack.descendants(2**22 + 12345) == []
        stack.stop_parts([stack.Part("x", proc.pid, stack.proc_start_time(proc.pid), "x.log")], grace=2.0)
        proc.wait(5)
        deadline = time.monotonic() + 5
        while procs._group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs._group_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_open_paths_names_working_folders_and_open_files(tmp_path):
    (tmp_path / "work").mkdir()
    held = tmp_path / "held.bin"
    code = f"import time; f = open({str(held)!r}, 'wb'); print('ok', flush=True); time.sleep(60)"
    proc = child(code, cwd=tmp_path / "work", stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ok\n"
        seen = gc._open_paths()
        assert str((tmp_path / "work").resolve()) in seen and str(held.resolve()) in seen
        assert gc._in_use(tmp_path, seen) and not gc._in_use(tmp_path / "elsewhere", seen)
    finally:
        proc.kill()
        proc.wait()
