"""Publish Prefect artifacts only inside a flow or task run (plain calls, as in tests, skip them)."""

from __future__ import annotations

import hashlib
import re

MAX_KEY = 100  # the UI's artifact list stays readable; longer keys keep a digest of the rest


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from its parts (recipe name, what it is): lowercase letters, digits and dashes,
    as Prefect requires. The recipe's name is a part of every per-recipe key, so two recipes never replace
    each other's latest artifact."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "artifact"
    if len(key) > MAX_KEY:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = f"{key[: MAX_KEY - 9].rstrip('-')}-{digest}"
    return key


def publish_markdown(key: str, markdown: str, description: str = "") -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    create_markdown_artifact(key=key, markdown=markdown, description=description)
