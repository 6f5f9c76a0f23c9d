"""The `pipeline` flow: every recipe a release needs, each through its own flow, then one release summary."""

from __future__ import annotations

from prefect import flow

from flows import FLOWS
from llmpath.links import artifact_key
from llmpath.recipes import Recipe
from tasks import flowrun
from tasks.publish import publish_markdown
from tasks.release import release_rows, release_table


@flow(name="pipeline", log_prints=True, flow_run_name=flowrun.run_name)
def pipeline(recipes: list[Recipe]) -> list[dict]:
    """Run each recipe's flow (classify, ...) in order, then summarize the release: models and versions per
    alias, deployable forms, index collections, Bento tags and links to the MLflow runs."""
    if not recipes:
        raise ValueError("a pipeline needs at least one recipe")
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be unique in a pipeline: {names}")
    flowrun.begin(*recipes)
    summaries = [FLOWS[recipe.kind](recipe) for recipe in recipes]
    rows = release_rows(recipes, summaries)
    markdown = release_table(rows)
    # Keyed by its recipes: each release keeps its own latest summary.
    about = f"What the release of {', '.join(names)} registered, promoted and packaged"
    publish_markdown(artifact_key("release", *names), markdown, about)
    print(markdown)
    return rows
