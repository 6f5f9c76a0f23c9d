"""What people click and read in the MLflow and Prefect UIs: page addresses, run names, artifact keys and the
names datasets are shown under. Pure functions of their arguments (no MLflow or Prefect calls)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

MAX_KEY = 100  # Prefect artifact keys: the UI's list stays readable


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def version_url(ui: str, name: str, version: str) -> str:
    """The MLflow UI page of a registered model version."""
    return f"{ui.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def logged_model_url(ui: str, experiment_id: str, model_id: str) -> str:
    """The MLflow UI page of a logged model (MLflow 3 LoggedModel, `models:/m-...`)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/models/{model_id}"


def compare_url(ui: str, experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI's side-by-side comparison of runs."""
    runs = quote(json.dumps(run_ids, separators=(",", ":")), safe="")
    experiments = quote(json.dumps([experiment_id], separators=(",", ":")), safe="")
    return f"{ui.rstrip('/')}/#/compare-runs?runs={runs}&experiments={experiments}"


def flow_run_url(prefect_ui: str | None, flow_run_id: str) -> str | None:
    """The Prefect UI page of a flow run, or None without a Prefect server (a temporary one is gone once the
    run ends: its address would lead nowhere)."""
    return f"{prefect_ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if prefect_ui else None


def md_link(text: str, url: str | None) -> str:
    """A Markdown link, or the text alone without an address. `|` is escaped: the text may sit in a table."""
    text = str(text).replace("|", "\\|")
    return f"[{text}]({url})" if url else text


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from its parts (recipe name, what it is): lowercase letters, digits and dashes only
    (what Prefect accepts), at most 100 characters; a longer one keeps a digest of the whole, so two long keys
    stay apart. The recipe's name is a part of every per-recipe key, so two recipes never replace each other's
    latest artifact: `artifact_key("summary", "classify-SST2_smoke")` is `summary-classify-sst2-smoke`."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "artifact"
    if len(key) > MAX_KEY:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = f"{key[: MAX_KEY - 9].rstrip('-')}-{digest}"
    return key


def mlflow_run_name(
    recipe: str,
    kind: str,
    flow_run: str | None,
    run_count: int = 1,
    now: datetime | None = None,
    token: str = "",
) -> str:
    """A readable run name that tells runs of one recipe apart: the Prefect flow run's name (prefixed with the
    recipe's name unless it already starts with it, or with it less its kind's prefix; `-try2` when Prefect
    retries the flow run), else the recipe and the start time (`classify-sst2-smoke-20261202-014002`, then
    `token`)."""
    if flow_run:
        short = recipe.removeprefix(f"{kind}-") or recipe
        name = flow_run if flow_run.startswith((recipe, short)) else f"{recipe}-{flow_run}"
        return name + (f"-try{run_count}" if run_count > 1 else "")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{recipe}-{stamp}" + (f"-{token}" if token else "")


def data_label(path: Path, root: Path | None, home: Path | None = None) -> str:
    """How a data file is named in MLflow: relative to the data root when under it, `~/...` when under the
    user's home, else as given (never the user's home folder spelled out)."""
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    home = home if home is not None else Path.home()
    if path.is_relative_to(home):
        return "~/" + path.relative_to(home).as_posix()
    return path.as_posix()


def model_id_of(uri: str | None) -> str | None:
    """The logged model id of a `models:/m-...` URI (None for other URIs: `runs:/`, `models:/NAME/1`)."""
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)/?", uri or "")
    return match.group(1) if match else None
