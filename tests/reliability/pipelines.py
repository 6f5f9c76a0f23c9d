"""Whole pipelines as a user starts them (`llmpath run` in its own process) against one store, for the
concurrency and fault tests: the tiny BERT on toy data, a few seconds of training each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_recipe

LLMPATH = str(Path(sys.executable).with_name("llmpath"))


def write_recipe(folder: Path, model: Path, name: str, **train) -> Path:
    """A tiny classify recipe (160 rows x 6 epochs / 16 = 60 steps: enough for the toy task, about a second
    of training) and its toy data, in `folder`; `train` adds settings of its train section."""
    raw = tiny_recipe(folder, model, name=name, train={"threads": 1} | train)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_env(home: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """One store for every process: the MLflow SQLite file in `home`, the test session's Prefect API (no
    temporary server per process) and its result storage (so cached stages are shared, as on one machine)."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env |= {
        "LLMPATH_HOME": str(home),
        "LLMPATH_DATA_DIR": str(data_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PYTHONUNBUFFERED": "1",
    }
    return env | extra


def start(recipe: Path, env: dict[str, str], log: Path, *sets: str) -> subprocess.Popen:
    args = [LLMPATH, "run", str(recipe)]
    for value in sets:
        args += ["--set", value]
    with log.open("w") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 900.0) -> str:
    """Wait for a run to end; fail with its log unless it exited 0."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"llmpath run did not finish in {timeout:.0f} s:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert code == 0, text[-4000:]
    return text


def kill_at(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 600.0) -> str:
    """Wait until the run's log shows `marker`, then SIGKILL its whole process group."""
    deadline = time.monotonic() + timeout
    while marker not in log.read_text():
        if proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before {marker!r}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {marker!r} in {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return log.read_text()


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGKILL the process groups of runs still going (a test that failed early leaves none behind)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def consistent(moves) -> bool:
    """Every move starts where the previous one ended (no lost or overwritten move)."""
    return all(a.to_version == b.from_version for a, b in zip(moves, moves[1:], strict=False))
