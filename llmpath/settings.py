"""Where things live: data root, MLflow store, caches. Every path comes from the environment or a default."""

from __future__ import annotations

import os
from pathlib import Path

# Quiet, offline-friendly defaults for the libraries we drive. Set before they are imported.
_DEFAULT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # The temporary server `llmpath run` starts without a stack listens on a random loopback port: no web page
    # may drive it (cross-origin reads refused, writes need the CSRF token that Prefect's own client fetches).
    "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": "http://127.0.0.1:4200",
    "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_HF_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def apply_defaults() -> None:
    """Set the environment defaults above unless the user set them already."""
    for key, value in _DEFAULT_ENV.items():
        os.environ.setdefault(key, value)


# What the user set before llmpath touched these: allowing the hub must not override a user who is offline
# and said so (they get a one-line "offline mode is enabled" error at once, not a minute of retries).
_USER_HF_OFFLINE = {key: os.environ.get(key) for key in _HF_OFFLINE}


def set_hub_access(allowed: bool) -> None:
    """Turn Hugging Face hub access off unless a recipe explicitly names a hub source."""
    for key in _HF_OFFLINE:
        if not allowed:
            os.environ[key] = "1"
        elif _USER_HF_OFFLINE[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = _USER_HF_OFFLINE[key]


def project_home() -> Path:
    """Folder holding `mlruns/` (the embedded MLflow store). `LLMPATH_HOME`, else the working directory."""
    return Path(os.environ.get("LLMPATH_HOME") or Path.cwd()).resolve()


def data_root() -> Path | None:
    """Root that relative dataset paths in recipes are resolved against (`LLMPATH_DATA_DIR`)."""
    value = os.environ.get("LLMPATH_DATA_DIR")
    return Path(value).expanduser().resolve() if value else None


def cache_dir() -> Path:
    """Cache for converted base models (`LLMPATH_CACHE_DIR`, default ~/.cache/llmpath)."""
    value = os.environ.get("LLMPATH_CACHE_DIR") or Path.home() / ".cache" / "llmpath"
    path = Path(value).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set (a server), else the embedded SQLite store in `mlruns/`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    mlruns = project_home() / "mlruns"
    mlruns.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{mlruns / 'mlflow.db'}"


def artifact_root() -> str:
    """Artifact location for new experiments on the embedded store."""
    value = os.environ.get("LLMPATH_ARTIFACT_ROOT")
    if value:
        return value
    path = project_home() / "mlruns" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def mlflow_ui_url() -> str:
    """Where people open the MLflow UI: `LLMPATH_MLFLOW_UI_URL`, else a tracking server's URL, else the address
    `make mlflow-ui` / `llmpath up` serve it on."""
    value = os.environ.get("LLMPATH_MLFLOW_UI_URL")
    if value:
        return value.rstrip("/")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("http"):
        return uri.rstrip("/")
    host = os.environ.get("LLMPATH_HOST", "127.0.0.1")
    return f"http://{host}:{os.environ.get('LLMPATH_MLFLOW_PORT', '5000')}"
