"""What a flow run of llmpath says about itself in the Prefect UI, and the one rule it applies first:

- its name says what it does: the recipe's name without its kind's prefix and the run id's last four hex
  digits (`sst2-smoke-3f9a`; a stage sent to another pool: `sst2-smoke-finetune-3f9a`; a release:
  `release-sst2-smoke-alpaca-smoke-3f9a`; `promote-sst2-classifier-v3-3f9a`), set by `flow_run_name=run_name`;
- its tags name the recipe's kind, the recipe and its registered model (`kind:classify`,
  `recipe:classify-sst2-smoke`, `model:sst2-classifier-smoke`), added to whatever tags the run came with
  (a deployment's, a caller's), however it was started: UI, API, `llmpath trigger`, `llmpath run`;
- hub access follows the CLI's rule (`settings.set_hub_access`): off unless a recipe names a `hub:` source.
  The first flow of a process decides, as the CLI decides once per command: a worker's flow-run process runs
  one root flow, whose subflows (a release's recipes) keep its decision.
"""

from __future__ import annotations

import re
from typing import Any

from llmpath import settings

MAX_LABEL = 60
_hub_decided = False


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def short_name(recipe: Any) -> str:
    """The recipe's name without its kind's prefix: `classify-sst2-smoke` -> `sst2-smoke`."""
    name, kind = str(_field(recipe, "name") or "recipe"), _field(recipe, "kind")
    return name.removeprefix(f"{kind}-") if kind and name != kind else name


def run_label(parameters: dict[str, Any], flow_name: str) -> str:
    """What a run does, from its (validated) parameters: the part of its name before the short id."""
    if parameters.get("recipe") is not None:
        label = short_name(parameters["recipe"])
        if parameters.get("stage"):
            label += f"-{parameters['stage']}"
    elif parameters.get("recipes"):
        label = "release-" + "-".join(short_name(r) for r in parameters["recipes"])
    elif parameters.get("model"):
        label = f"{flow_name}-{parameters['model']}"
        if parameters.get("version") is not None:
            label += f"-v{parameters['version']}"
    else:
        label = flow_name
    label = re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-")
    return label[:MAX_LABEL].rstrip("-") or flow_name


def run_name_for(label: str, flow_run_id: Any) -> str:
    """`label-xxxx`: the last four hex digits of the run id tell two runs of one recipe apart (and match the
    end of the id in the run's address)."""
    return f"{label}-{str(flow_run_id).replace('-', '')[-4:]}"


def run_name() -> str:
    """`flow_run_name` of every llmpath flow: Prefect calls it inside the run, with its validated parameters."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return "llmpath"
    label = run_label(dict(ctx.parameters or {}), ctx.flow.name if ctx.flow else "llmpath")
    return run_name_for(label, ctx.flow_run.id)


def run_tags(*recipes: Any) -> list[str]:
    """`kind:K`, `recipe:NAME` and `model:REGISTERED_MODEL` of each recipe, in order, without repeats."""
    tags: list[str] = []
    for recipe in recipes:
        for prefix, value in (
            ("kind", _field(recipe, "kind")),
            ("recipe", _field(recipe, "name")),
            ("model", _field(recipe, "registered_model")),
        ):
            tag = f"{prefix}:{value}"
            if value and tag not in tags:
                tags.append(tag)
    return tags


def merged_tags(have: list[str], wanted: list[str]) -> list[str]:
    return [*have, *(t for t in wanted if t not in have)]


def tag_flow_run(tags: list[str]) -> None:
    """Add `tags` to the flow run in progress (a no-op outside one or when it has them all)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    have = list(ctx.flow_run.tags or [])
    new = merged_tags(have, tags)
    if new == have:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(ctx.flow_run.id, tags=new)
    ctx.flow_run.tags = new


def decide_hub_access(recipes: tuple[Any, ...]) -> None:
    """The CLI's rule, once per process (see the module docstring)."""
    global _hub_decided
    if not _hub_decided:
        settings.set_hub_access(any(bool(getattr(r, "uses_hub", False)) for r in recipes))
        _hub_decided = True


def begin(*recipes: Any, tags: tuple[str, ...] = ()) -> None:
    """What every flow of recipes does first: hub access by the CLI's rule, then its tags on the flow run."""
    decide_hub_access(recipes)
    tag_flow_run([*run_tags(*recipes), *tags])
