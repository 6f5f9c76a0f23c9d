"""Where the stack lives and listens: flags, environment, a running stack's record, defaults."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from llmpath import settings
from llmpath.stack.state import StackState

WILDCARDS = ("0.0.0.0", "", "::")
# MLflow always binds here: see `mlflow_cmd` for why it is never put on the network by `llmpath up`.
MLFLOW_HOST = "127.0.0.1"


class StackError(Exception):
    """A part could not start or is not healthy; the message names the part and its log."""


class StackUsageError(StackError):
    """The command asks for something unsafe or contradictory; nothing was started (exit code 2)."""


def is_loopback(host: str) -> bool:
    """Only the loopback interface: `localhost` or a 127.0.0.0/8 / ::1 address (a wildcard is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as reachable from the network


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and listens, and the auth string its Prefect API asks for (None: no auth)."""

    home: Path
    host: str
    prefect_port: int
    mlflow_port: int
    prefect_home: Path
    auth_string: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log

    @property
    def auth(self) -> bool:
        return self.auth_string is not None

    @property
    def state_dir(self) -> Path:
        return self.home / ".llmpath"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def auth_file(self) -> Path:
        return self.state_dir / "prefect-auth"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def client_host(self) -> str:
        """The address clients use: a wildcard bind is reached through loopback."""
        return "127.0.0.1" if self.host in WILDCARDS else self.host

    @property
    def prefect_ui(self) -> str:
        return f"http://{self.client_host}:{self.prefect_port}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_ui}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{MLFLOW_HOST}:{self.mlflow_port}"

    def origins(self) -> list[str]:
        """The stack's own web origins (its Prefect UI and MLflow UI): the only ones allowed cross-origin."""
        hosts = ["127.0.0.1", "localhost"]
        if self.host not in WILDCARDS and self.host not in hosts:
            hosts.append(f"[{self.host}]" if ":" in self.host else self.host)
        prefect = [f"http://{h}:{self.prefect_port}" for h in hosts]
        return prefect + [f"http://{h}:{self.mlflow_port}" for h in ("127.0.0.1", "localhost")]

    def with_auth(self, auth_string: str | None) -> StackConfig:
        return StackConfig(
            self.home, self.host, self.prefect_port, self.mlflow_port, self.prefect_home, auth_string
        )


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackError(f"{name}={value!r} is not a port number")
    return int(value)


def config_from_args(args: argparse.Namespace, recorded: StackState | None = None) -> StackConfig:
    """Flags, then LLMPATH_HOST / LLMPATH_PREFECT_PORT / LLMPATH_MLFLOW_PORT, then a running stack's, then defaults.

    The auth string is not read here (see `auth.stack_auth`)."""
    home = settings.project_home()
    prefect_home = os.environ.get("PREFECT_HOME") or (recorded.prefect_home if recorded else None)
    return StackConfig(
        home=home,
        host=args.host or os.environ.get("LLMPATH_HOST") or (recorded.host if recorded else "127.0.0.1"),
        prefect_port=args.prefect_port
        or _env_port("LLMPATH_PREFECT_PORT", recorded.prefect_port if recorded else 4200),
        mlflow_port=args.mlflow_port
        or _env_port("LLMPATH_MLFLOW_PORT", recorded.mlflow_port if recorded else 5000),
        prefect_home=Path(prefect_home).expanduser().resolve()
        if prefect_home
        else home / ".llmpath" / "prefect",
    )


def config_of(state: StackState, auth_string: str | None = None) -> StackConfig:
    """The configuration of a recorded stack (for `status`, `down` and the CLI commands that join it)."""
    return StackConfig(
        settings.project_home(),
        state.host,
        state.prefect_port,
        state.mlflow_port,
        Path(state.prefect_home),
        auth_string,
    )
