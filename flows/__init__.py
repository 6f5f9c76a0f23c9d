"""Prefect flows. Each recipe kind has a flow of its own name in `flows/<kind>.py` (so the Prefect UI lists a
deployment per kind, with a form of that kind's fields); `FLOWS` finds them by the kinds' names."""

from __future__ import annotations

import importlib

from llmpath.recipes import kinds


def _flows() -> dict:
    found = {}
    for name in kinds():
        module = importlib.import_module(f"flows.{name}")
        found[name] = getattr(module, name)
    return found


FLOWS = _flows()
