"""MLflow helpers shared by every stage: one store, one run per pipeline, artifacts by URI."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llmpath import settings

_READY: set[str] = set()


def configure() -> str:
    """Point MLflow at the configured store (embedded SQLite by default) and return its URI."""
    import mlflow

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///") and uri not in _READY:
        _create_sqlite_tables(uri)
        _READY.add(uri)
    return uri


def _create_sqlite_tables(uri: str) -> None:
    """Create a new embedded store's tables one process at a time: processes that open a fresh SQLite store
    together all run its schema migration, and all but one fail ("Online migration expected to match one
    row"). Once the tables exist, MLflow skips the migration."""
    import fcntl

    import mlflow

    folder = Path(uri.removeprefix("sqlite:///")).parent
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".mlflow-init.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # the tracking tables
        client.search_registered_models(max_results=1)  # the registry's


def store_digest() -> str:
    """Names the tracking store: Bentos carry it as a label, so `llmpath gc` judges only its own store's."""
    return hashlib.sha256(settings.tracking_uri().encode()).hexdigest()[:12]


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created when missing. Two first runs of a recipe race here: the loser's
    "already exists" is success, and it reads the winner's experiment."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure()
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None  # a tracking server decides where artifacts go
    if not settings.tracking_uri().startswith("http"):
        folder = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"
        location = f"{settings.artifact_root().rstrip('/')}/{folder}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as err:
        existing = client.get_experiment_by_name(name)
        if err.error_code != "RESOURCE_ALREADY_EXISTS" or existing is None:
            raise
        return existing.experiment_id


@contextlib.contextmanager
def use_run(run_id: str) -> Iterator[None]:
    """Make `run_id` the active run (resuming it when this process or machine did not start it), and leave
    its status as it was."""
    import mlflow

    configure()
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    # Leave the run in the state it had: a pipeline run stays RUNNING between its stages (so a run killed
    # between two stages shows as unfinished, and `llmpath gc` and checkpoints can tell), a finished run
    # stays FINISHED. mlflow.start_run's own exit would mark it FINISHED after every stage.
    before = mlflow.MlflowClient().get_run(run_id).info.status
    mlflow.start_run(run_id=run_id, nested=active is not None)
    try:
        yield
    finally:
        mlflow.end_run(status=before)


_SCRATCH: list[Path] = []
_DOWNLOADS: dict[tuple[str, str], Path] = {}
SCRATCH_PREFIX = "llmpath-scratch-"  # then the owner's pid: `llmpath gc` removes those of dead processes


def scratch(prefix: str) -> Path:
    """A new folder under this process's scratch root, which is removed when the process exits (a chat run
    moves gigabytes of weights through here: nothing may be left behind in /tmp). A process killed with
    SIGKILL never runs atexit: its root is named after its pid, so `llmpath gc` can tell it is orphaned."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH[0]))


def download(uri: str, fresh: bool = False) -> Path:
    """Fetch an artifact URI (local store or remote) to a local folder and return its path. Artifacts do not
    change once logged, so a process fetches each URI once (several stages read the same model); `fresh`
    fetches again. Treat the folder as read-only."""
    import mlflow

    key = (configure(), uri)
    cached = _DOWNLOADS.get(key)
    if cached is not None and cached.exists() and not fresh:
        return cached
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch("download-")))
    _DOWNLOADS[key] = path
    return path


def download_model(model_uri: str) -> Path:
    """Local folder of a logged transformers-flavour model (the checkpoint inside the MLflow Model)."""
    return download(model_uri) / "model"


def artifact_uri(run_id: str, path: str) -> str:
    return f"runs:/{run_id}/{path}"


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, name)
    plt.close(fig)
