"""One writer at a time per registered model: the registry lock behind every alias move and registration.

MLflow has no compare-and-set, so writers that read an alias and then move it (the gate, `llmpath promote`,
`rollback`, the undo of a failed run, registration) hold this lock for the few calls between the read and the
write. It has two layers:

- a file lock (`fcntl.flock`) keyed by the tracking store and the model, which serializes the processes of one
  machine exactly, and which the kernel releases when its holder dies (kill -9 included);
- a lease held as the registered model's tag `llmpath.lock` (owner, host, pid, expiry), which serializes hosts
  that share a tracking server. A lease is taken by writing it, waiting `SETTLE` seconds and reading it back
  (the last writer wins, and only it sees its own token). A lease whose holder died on this host, or whose
  expiry passed, is stale and may be taken over: a crash never leaves the model locked for longer than `TTL`.

A holder keeps the lock for seconds, never across a training or packaging stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from llmpath import settings, tracking

LOCK_TAG = "llmpath.lock"
TTL = 120.0  # seconds a lease is good for; critical sections take a few seconds
SETTLE = 0.5  # seconds between writing a lease and reading it back (longer than any reader's read->write gap)
WAIT = 600.0  # how long a writer waits for the lock before giving up with a clear message
_HELD: dict[str, int] = {}  # model -> depth: the same process may nest (an undo inside a move)


class RegistryBusy(RuntimeError):
    """The registry lock of a model stayed held by another writer for longer than the caller would wait."""


def pid_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie, killed and not yet reaped, is dead: in a container
    whose init does not reap orphans it may stay one for good)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS), or it exited just now
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]  # the state follows the command name's ")"


def lock_dir() -> Path:
    """Next to the SQLite file for the embedded store (every process using it sees the same folder); under
    the temp dir, keyed by the URI, for a tracking server."""
    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent / "locks"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / f"llmpath-locks-{os.getuid()}" / digest
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _lock_file(name: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:80]
    return lock_dir() / f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.lock"


@contextlib.contextmanager
def _file_lock(path: Path, deadline: float, name: str) -> Iterator[None]:
    with path.open("a+") as handle:
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryBusy(
                        f"{name}: another llmpath process on this machine held the registry lock for over "
                        f"{WAIT:.0f} s ({path}); try again when it is done"
                    ) from None
                if not said:
                    print(f"{name}: waiting for another writer of this model on this machine")
                    said = True
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_registered_model(name: str, description: str | None = None, create: bool = True) -> None:
    """Create the registered model unless it exists (a concurrent creator's "already exists" is success);
    with `create=False`, a missing model is a LookupError."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
        return
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    if not create:
        raise LookupError(f"no registered model named {name!r}")
    try:
        client.create_registered_model(name, description=description)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _read_lease(client, name: str) -> dict | None:
    from mlflow.exceptions import MlflowException

    try:
        raw = client.get_registered_model(name).tags.get(LOCK_TAG)
    except MlflowException:
        return None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"owner": "?", "expires": 0}  # unreadable: treat as expired


def is_stale(lease: dict, now: float | None = None) -> bool:
    """Expired, or held by a dead process on this host."""
    if float(lease.get("expires", 0)) < (now if now is not None else time.time()):
        return True
    return lease.get("host") == socket.gethostname() and not pid_alive(int(lease.get("pid", 0)))


def describe(lease: dict) -> str:
    left = float(lease.get("expires", 0)) - time.time()
    return f"{lease.get('owner', '?')} ({lease.get('what', '?')}, expires in {max(left, 0):.0f} s)"


def _take_lease(client, name: str, what: str, deadline: float) -> str:
    from mlflow.exceptions import MlflowException

    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    said = False
    while True:
        lease = _read_lease(client, name)
        if lease is None or is_stale(lease):
            mine = {
                "owner": token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "what": what,
                "expires": time.time() + TTL,
            }
            try:
                client.set_registered_model_tag(name, LOCK_TAG, json.dumps(mine))
            except MlflowException as err:  # the model went away (an undo deleted it): create it again
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                ensure_registered_model(name)
                continue
            time.sleep(SETTLE)
            lease = _read_lease(client, name)
            if lease is not None and lease.get("owner") == token:
                return token
        if time.monotonic() > deadline:
            raise RegistryBusy(
                f"{name}: the registry lock is held by {describe(lease or {})}; try again later"
            )
        if not said and lease is not None:
            print(f"{name}: waiting for the registry lock held by {describe(lease)}")
            said = True
        time.sleep(0.5)


def _release(client, name: str, token: str) -> None:
    from mlflow.exceptions import MlflowException

    lease = _read_lease(client, name)
    if lease is None:
        return  # the model was deleted with its tags
    if lease.get("owner") != token:
        print(f"{name}: the registry lock expired while held and was taken by {describe(lease)}")
        return
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_tag(name, LOCK_TAG)


@contextlib.contextmanager
def registry_lock(
    name: str, what: str, create: bool = False, description: str | None = None
) -> Iterator[None]:
    """Hold the registry lock of `name` for one read-compare-write of its aliases. `create`: make the
    registered model when it does not exist yet (registration); otherwise a missing model is a LookupError."""
    import mlflow

    tracking.configure()
    if _HELD.get(name):
        _HELD[name] += 1
        try:
            yield
        finally:
            _HELD[name] -= 1
        return
    deadline = time.monotonic() + WAIT
    with _file_lock(_lock_file(name), deadline, name):
        ensure_registered_model(name, description, create)
        client = mlflow.MlflowClient()
        token = _take_lease(client, name, what, deadline)
        _HELD[name] = 1
        try:
            yield
        finally:
            _HELD.pop(name, None)
            _release(client, name, token)
