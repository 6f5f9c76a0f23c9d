"""Failpoints: named places where the fault tests stop a run so they can kill it exactly there (kill -9 during
registration, during packaging). Inert unless `LLMPATH_FAILPOINT` names the point: then the process says so
on stdout and waits to be killed, so a test never has to guess with a sleep."""

from __future__ import annotations

import os
import time


def point(name: str) -> None:
    """Stop here, forever, when `LLMPATH_FAILPOINT` is `name`."""
    if os.environ.get("LLMPATH_FAILPOINT") != name:
        return
    print(f"llmpath failpoint {name}: reached, waiting to be killed (pid {os.getpid()})", flush=True)
    while True:
        time.sleep(1)
