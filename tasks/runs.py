"""The MLflow run that spans one pipeline: open it, close it FINISHED or FAILED, summarize it."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from llmpath import links, tracking
from llmpath.recipes import Recipe
from llmpath.results import PromotionResult, Registration
from tasks import describe
from tasks.publish import publish_markdown
from tasks.registry import undo_registration


@dataclass
class PipelineRun:
    run_id: str
    experiment_id: str
    registration: Registration | None = None
    promotion: PromotionResult | None = None
    summary: dict = field(default_factory=dict)


def sweep_leftovers() -> None:
    """Remove what killed runs left in the temp dir (their scratch roots, index copies nobody has open)."""
    from llmpath import gc

    for item in gc.temp_leftovers():
        gc.drop(item)
        print(f"removed a leftover {item.kind}: {item.name} ({item.why})")


def owner_tags() -> dict[str, str]:
    """Which process runs this: a RUNNING run whose process is gone was killed (`llmpath gc`, checkpoints)."""
    return {"llmpath.host": socket.gethostname(), "llmpath.pid": str(os.getpid())}


@contextlib.contextmanager
def pipeline_run(recipe: Recipe) -> Iterator[PipelineRun]:
    """One MLflow run per pipeline. On any failure: run FAILED, the alias moves this run made undone (where
    nobody moved them since), its new version removed (unless an alias points at it)."""
    import mlflow

    sweep_leftovers()
    experiment_id = tracking.ensure_experiment(recipe.experiment_name)
    client = mlflow.MlflowClient()
    flow = describe.flow_run()
    run = client.create_run(
        experiment_id,
        run_name=describe.run_name(recipe, flow),
        tags={"llmpath.recipe": recipe.name, "llmpath.kind": recipe.kind}
        | owner_tags()
        | describe.flow_tags(flow),
    )
    state = PipelineRun(run.info.run_id, experiment_id)
    client.log_text(state.run_id, yaml.safe_dump(recipe.model_dump(), sort_keys=False), "recipe.yaml")
    with tracking.use_run(state.run_id):
        mlflow.log_params(recipe_params(recipe))
    try:
        yield state
    except BaseException as err:
        if state.registration is not None:
            try:
                undo_registration(state.registration, state.promotion, f"{type(err).__name__}: {err}")
            except Exception as undo_err:  # still mark the run failed; say what needs a hand
                print(f"could not undo {state.registration.name} v{state.registration.version}: {undo_err}")
        client.set_tag(state.run_id, "llmpath.error", f"{type(err).__name__}: {err}"[:4000])
        client.set_terminated(state.run_id, "FAILED")
        print(f"MLflow run {state.run_id} marked FAILED: {type(err).__name__}: {err}")
        raise
    pages = describe.describe(recipe, state)
    client.set_terminated(state.run_id, "FINISHED")
    markdown = summary_markdown(state.summary, pages)
    publish_markdown(links.artifact_key("summary", recipe.name), markdown, f"Summary of {recipe.name}")
    print(markdown)


def recipe_params(recipe: Recipe) -> dict[str, str]:
    """Every recipe setting as a flat MLflow param (`train.learning_rate`, ...), so runs compare in the UI."""
    flat = {"name": recipe.name, "kind": recipe.kind, "registered_model": recipe.registered_model}
    for section, values in recipe.model_dump().items():
        if isinstance(values, dict):
            flat |= {f"{section}.{key}": str(value) for key, value in values.items()}
    return flat


def summary_markdown(summary: dict, pages: dict[str, str] | None = None) -> str:
    """The summary as a Markdown table; a row named in `pages` (`mlflow run`, `model version`) links there."""
    pages = pages or {}
    lines = ["# Pipeline summary", "", "| what | value |", "|---|---|"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        lines.append(f"| {key} | {links.md_link(str(value), pages.get(key))} |")
    return "\n".join(lines) + "\n"
