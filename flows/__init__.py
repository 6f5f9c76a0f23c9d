"""Prefect flows. Each recipe kind has a flow of its own name in `flows/<kind>.py` (so the Prefect UI lists a
deployment per kind, with a form of that kind's fields); `FLOWS` finds them by the kinds' names."""

from __future__ import annotations

import importlib

from llmpath.recipes import kinds


def _flows() -> dict:
    found = {}
    for name in kinds():
        try:
            module = importlib.import_module(f"flows.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"flows.{name}":
                raise
            raise ImportError(
                f"kind {name!r} has no flow: add flows/{name}.py (docs/adding-a-kind.md)"
            ) from None
        found[name] = getattr(module, name)
    return found


FLOWS = _flows()
