"""Publish Prefect artifacts only inside a flow or task run (plain calls, as in tests, skip them)."""

from __future__ import annotations


def publish_markdown(key: str, markdown: str, description: str = "") -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    create_markdown_artifact(key=key, markdown=markdown, description=description)
