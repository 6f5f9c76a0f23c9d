"""The stack's Prefect API auth string (a file of mode 0600 next to stack.json) and a client that presents it.

Prefect compares the whole decoded Basic credential to PREFECT_SERVER_API_AUTH_STRING, so the string is
`llmpath:<random>`: a browser's or the Prefect UI's login takes it as user `llmpath` and that password.
The string goes to the processes that need it through their environment only, never on a command line
(`ps` shows those to every user) and never in a log line.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
import uuid
from pathlib import Path

import httpx

from llmpath.stack.config import StackConfig, StackError

AUTH_USER = "llmpath"


def create_auth(path: Path) -> str:
    """The auth string stored at PATH, written first (mode 0600, never over an existing file) if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = f"{AUTH_USER}:{secrets.token_urlsafe(32)}"
    try:
        # O_EXCL: two `up`s at once cannot both write, and an existing file or link is never followed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_auth(path)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def read_auth(path: Path) -> str:
    """The stored auth string; a file others can read is tightened to 0600 first (it is a password)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise StackError(f"no auth string in {path}: run `llmpath up` to create one") from None
    if not path.is_file() or path.is_symlink():
        raise StackError(f"{path} is not a plain file: remove it and run `llmpath up` again")
    if mode & 0o077:
        os.chmod(path, 0o600)
        print(f"note: {path} was readable by other users; made it 0600", file=sys.stderr)
    value = path.read_text().strip()
    if not value or any(c.isspace() for c in value):
        raise StackError(f"{path} does not hold an auth string: remove it and run `llmpath up` again")
    return value


def recorded_auth(config: StackConfig, auth_on: bool) -> StackConfig:
    """CONFIG with the stored auth string when the recorded stack uses auth."""
    return config.with_auth(read_auth(config.auth_file) if auth_on else None)


def basic_header(auth_string: str) -> str:
    return "Basic " + base64.b64encode(auth_string.encode()).decode()


class StackAPI:
    """A small httpx client of the stack's Prefect API that does what Prefect's own client does: it sends the
    auth string, and on state-changing requests (POST, also for filters) a CSRF token fetched once."""

    def __init__(self, config: StackConfig, timeout: float = 5.0):
        headers = {"Authorization": basic_header(config.auth_string)} if config.auth_string else {}
        self.http = httpx.Client(base_url=config.prefect_api, headers=headers, timeout=timeout)
        self.csrf_client = str(uuid.uuid4())
        self.csrf_token: str | None = None

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, json: dict | None = None) -> httpx.Response:
        body = json if json is not None else {}
        response = self.http.post(path, json=body, headers=self._csrf_headers())
        if response.status_code == 403 and self.csrf_token is not None:  # expired (1 h): fetch a new one
            self.csrf_token = None
            response = self.http.post(path, json=body, headers=self._csrf_headers())
        return response

    def _csrf_headers(self) -> dict[str, str]:
        if self.csrf_token is None:
            response = self.http.get("/csrf-token", params={"client": self.csrf_client})
            if response.status_code == 422:  # the server has CSRF protection off: nothing to send
                return {}
            response.raise_for_status()
            self.csrf_token = response.json()["token"]
        return {"Prefect-Csrf-Token": self.csrf_token, "Prefect-Csrf-Client": self.csrf_client}

    def close(self) -> None:
        self.http.close()
