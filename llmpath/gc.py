"""`llmpath gc`: what killed runs and old builds leave behind, found and (when asked) removed.

- scratch roots (`llmpath-scratch-<pid>-*` in the temp dir) of processes that are gone: a run killed with
  SIGKILL never reaches its atexit cleanup;
- served index copies (`llmpath-rag-*`) that no live process has open: a rag worker killed hard leaves one;
- Milvus collections with an llmpath build record that no registry version names and no live run is building;
- Bentos (and their BentoML models) built against this tracking store that no registry version names;
- pipeline runs left RUNNING by a process of this host that is gone (marked KILLED, nothing deleted).

Only this store's things are judged: a Bento carries the store it was built against (label `store`), and a
collection counts as referenced when any version of any model in this store names it. Anything touched in the
last `RECENT` seconds is left alone (it may be a run that is just starting).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from llmpath import tracking
from llmpath.locks import pid_alive

RECENT = 60.0
LEGACY_AGE = 24 * 3600.0  # a scratch root without a pid in its name (older llmpath): only once a day old


@dataclass(frozen=True)
class Leftover:
    kind: str  # scratch | index copy | collection | bento | bento model | run
    name: str  # a path, `uri#collection` or a tag
    why: str


def _old(path: Path, age: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > age
    except FileNotFoundError:
        return False


def _open_paths() -> set[str]:
    """Working folders and open files of every process we may inspect (another user's: not ours to judge)."""
    seen: set[str] = set()
    # process_iter skips processes that exit meanwhile and gives None for what it may not read (or a zombie's)
    for proc in psutil.process_iter(["cwd", "open_files"]):
        if proc.info["cwd"]:
            seen.add(proc.info["cwd"])
        seen.update(f.path for f in proc.info["open_files"] or ())
    return seen


def _in_use(path: Path, open_paths: set[str]) -> bool:
    prefix = str(path.resolve())
    return any(p == prefix or p.startswith(prefix + os.sep) for p in open_paths)


def temp_leftovers(temp_root: Path | None = None) -> list[Leftover]:
    """Scratch roots of dead processes and index copies nobody has open, under the temp dir."""
    root = Path(temp_root or tempfile.gettempdir())
    found: list[Leftover] = []
    open_paths: set[str] | None = None
    for path in sorted(root.glob(f"{tracking.SCRATCH_PREFIX}*")):
        owner = path.name.removeprefix(tracking.SCRATCH_PREFIX).split("-", 1)[0]
        if owner.isdigit():
            if not pid_alive(int(owner)) and _old(path, RECENT):
                found.append(Leftover("scratch", str(path), f"its process {owner} is gone"))
        elif _old(path, LEGACY_AGE):
            open_paths = _open_paths() if open_paths is None else open_paths
            if not _in_use(path, open_paths):
                found.append(Leftover("scratch", str(path), "no process has it open, over a day old"))
    for path in sorted(root.glob("llmpath-rag-*")):
        if path.is_dir() and _old(path, RECENT):
            open_paths = _open_paths() if open_paths is None else open_paths
            if not _in_use(path, open_paths):
                found.append(Leftover("index copy", str(path), "no rag worker has it open"))
    return found


def _versions() -> list:
    import mlflow

    tracking.configure()
    client = mlflow.MlflowClient()
    versions = []
    for model in client.search_registered_models(max_results=1000):
        versions += client.search_model_versions(f"name='{model.name}'", max_results=10000)
    return versions


def _live_builds() -> set[str]:
    """Collections named by RUNNING runs whose process may still be alive (another host: assume so)."""
    import mlflow

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    live = set()
    if not experiments:
        return live
    runs = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000)
    for run in runs:
        tags = run.data.tags
        if "index.collection" not in tags:
            continue
        dead = tags.get("llmpath.host") == socket.gethostname() and not pid_alive(
            int(tags.get("llmpath.pid", "0") or 0)
        )
        if not dead:
            live.add(tags["index.collection"])
    return live


def collection_leftovers(versions: list, default_uri: str) -> tuple[list[Leftover], list[str]]:
    """Unreferenced llmpath collections in every Milvus this store's versions name (and the default one).
    Returns them and the notes on Milvus instances that could not be inspected."""
    from llmpath.families.index import vectors
    from llmpath.families.index.vectors import read_record

    referenced = {
        (v.tags.get("milvus_uri"), v.tags["collection"]) for v in versions if "collection" in v.tags
    }
    uris = {default_uri} | {uri for uri, _ in referenced if uri}
    live = _live_builds()
    found, notes = [], []
    for uri in sorted(uris):
        if not vectors.is_server(uri) and not Path(uri).exists():
            continue
        try:
            with vectors.connect(uri) as client:
                for name in sorted(client.list_collections()):
                    if (uri, name) in referenced or name in live:
                        continue
                    try:
                        read_record(client, name)
                    except Exception:  # not built by llmpath: not ours to judge
                        continue
                    found.append(Leftover("collection", f"{uri}#{name}", "no registry version names it"))
        except Exception as err:  # a Lite file held by a running flow, a server that is down
            notes.append(f"Milvus {uri}: not inspected ({type(err).__name__}: {str(err)[:200]})")
    return found, notes


def bento_leftovers(versions: list) -> list[Leftover]:
    """This store's Bentos that no version names, and the BentoML models only they held."""
    import bentoml

    store = tracking.store_digest()
    referenced = {v.tags["bento.tag"] for v in versions if "bento.tag" in v.tags}
    found, kept_models = [], set()
    for bento in bentoml.list():
        models = {str(m.tag) for m in bento.info.models}
        if bento.info.labels.get("store") != store or str(bento.tag) in referenced or _recent(bento):
            kept_models |= models
            continue
        found.append(Leftover("bento", str(bento.tag), "no registry version names it"))
    for model in bentoml.models.list():
        if (
            model.info.labels.get("store") == store
            and str(model.tag) not in kept_models
            and not _recent(model)
        ):
            found.append(Leftover("bento model", str(model.tag), "no kept Bento holds it"))
    return found


def _recent(item) -> bool:
    """Built in the last minute: a package stage may be about to name it on its version."""
    from datetime import UTC, datetime

    created = item.info.creation_time
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (datetime.now(UTC) - created).total_seconds() < RECENT


def dead_runs() -> list[Leftover]:
    """Pipeline runs still RUNNING whose process on this host is gone (killed): dropping one marks it KILLED."""
    import mlflow

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not experiments:
        return []
    runs = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000)
    return [
        Leftover("run", r.info.run_id, f"its process {r.data.tags['llmpath.pid']} is gone: mark it KILLED")
        for r in runs
        if r.data.tags.get("llmpath.host") == socket.gethostname()
        and r.data.tags.get("llmpath.pid", "").isdigit()
        and not pid_alive(int(r.data.tags["llmpath.pid"]))
    ]


def find(default_milvus_uri: str, temp_root: Path | None = None) -> tuple[list[Leftover], list[str]]:
    versions = _versions()
    collections, notes = collection_leftovers(versions, default_milvus_uri)
    found = temp_leftovers(temp_root) + collections + bento_leftovers(versions) + dead_runs()
    return found, notes


def drop(item: Leftover) -> None:
    """Remove one leftover."""
    if item.kind in ("scratch", "index copy"):
        shutil.rmtree(item.name, ignore_errors=True)
    elif item.kind == "collection":
        from llmpath.families.index import vectors

        uri, name = item.name.rsplit("#", 1)
        with vectors.connect(uri) as client:
            client.drop_collection(name)
    elif item.kind == "bento":
        import bentoml

        bentoml.delete(item.name)
    elif item.kind == "bento model":
        import bentoml

        bentoml.models.delete(item.name)
    elif item.kind == "run":
        import mlflow

        mlflow.MlflowClient().set_terminated(item.name, "KILLED")
    else:
        raise ValueError(f"unknown leftover kind {item.kind!r}")
