"""MLflow helpers shared by every stage: one store, one run per pipeline, artifacts by URI."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llmpath import settings


def configure() -> str:
    """Point MLflow at the configured store (embedded SQLite by default) and return its URI."""
    import mlflow

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    import mlflow

    configure()
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None  # a tracking server decides where artifacts go
    if not settings.tracking_uri().startswith("http"):
        folder = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"
        location = f"{settings.artifact_root().rstrip('/')}/{folder}"
    return client.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def use_run(run_id: str) -> Iterator[None]:
    """Make `run_id` the active run (resuming it when this process or machine did not start it)."""
    import mlflow

    configure()
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        yield


def download(uri: str) -> Path:
    """Fetch an artifact URI (local store or remote) to a local folder and return its path."""
    import mlflow

    configure()
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="llmpath-"))
    )


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
