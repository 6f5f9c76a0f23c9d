"""What `llmpath up` started, as recorded in `<home>/.llmpath/stack.json`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmpath import settings


def state_file(home: Path | None = None) -> Path:
    return (home or settings.project_home()) / ".llmpath" / "stack.json"


@dataclass
class Part:
    """One running process of the stack."""

    name: str
    pid: int
    start_time: int  # field 22 of /proc/PID/stat: clock ticks after boot, unique per PID incarnation
    log: str
    url: str = ""


@dataclass
class StackState:
    """What `up` started, as written to stack.json. `auth`: whether the Prefect API asks for the auth string."""

    host: str
    prefect_port: int
    mlflow_port: int
    prefect_home: str
    parts: list[Part] = field(default_factory=list)
    auth: bool = True

    @classmethod
    def for_config(cls, config) -> StackState:
        return cls(
            config.host, config.prefect_port, config.mlflow_port, str(config.prefect_home), auth=config.auth
        )

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    def replace(self, part: Part) -> None:
        self.parts = [p for p in self.parts if p.name != part.name] + [part]


def save_state(path: Path, state: StackState) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, path)


def load_state(path: Path) -> StackState | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    parts = [Part(**p) for p in data.pop("parts", [])]
    return StackState(**data, parts=parts)
