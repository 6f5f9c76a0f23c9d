"""What a pipeline run says about itself in the MLflow UI: a readable name, the Prefect flow run it belongs to,
what it reused from earlier runs (per cached stage), and, once it finished, a description on the run and on
its model version (the flow run, the Bento tag, links), with the same links in the summary artifact.

Nothing here may fail a run: a description that cannot be written is a line in the log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from llmpath import lineage, links, settings, tracking
from llmpath.recipes import Recipe
from llmpath.results import PreparedData, StageResult

NOTE = "mlflow.note.content"  # what the MLflow UI shows as a run's description
REUSED = "reused."  # reused.<stage>.run_id / reused.<stage>.uri: what a cached stage handed over
LIMIT = 5000  # the longest description a model version holds (a run tag may hold more)
_URI_FIELDS = ("model_uri", "deployable_uri", "uri", "fp32_uri", "predictions_uri")


@dataclass(frozen=True)
class FlowRun:
    id: str
    name: str
    run_count: int
    url: str | None  # None without a Prefect server (a temporary one is gone when the run ends)


def prefect_ui() -> str | None:
    """The Prefect UI's address when runs report to a server (`PREFECT_UI_URL`, else from `PREFECT_API_URL`)."""
    from prefect.settings import get_current_settings

    current = get_current_settings()
    return (current.ui_url or None) if current.api.url else None


def flow_run() -> FlowRun | None:
    """The Prefect flow run this code runs in, if any."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    run_id = str(ctx.flow_run.id)
    count = int(ctx.flow_run.run_count or 1)
    return FlowRun(run_id, ctx.flow_run.name, count, links.flow_run_url(prefect_ui(), run_id))


def run_name(recipe: Recipe, flow: FlowRun | None) -> str:
    """The MLflow run's name: its Prefect flow run's, else the recipe's with the time (see links.mlflow_run_name)."""
    return links.mlflow_run_name(
        recipe.name,
        recipe.kind,
        flow.name if flow else None,
        flow.run_count if flow else 1,
        token=uuid.uuid4().hex[:4],
    )


def flow_tags(flow: FlowRun | None) -> dict[str, str]:
    if flow is None:
        return {}
    tags = {"prefect.flow_run_id": flow.id, "prefect.flow_run_name": flow.name}
    return tags | ({"prefect.flow_run_url": flow.url} if flow.url else {})


def main_uri(result: Any) -> str | None:
    """The reference a stage result hands over: its model, its deployable form, its folder, its predictions."""
    for name in _URI_FIELDS:
        value = getattr(result, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def note_reuse(run_id: str, recipe: Recipe, stage: str, result: Any) -> None:
    """A stage served from the cache: name on this run the run and the model or artifact it reused (tags
    `reused.<stage>.run_id`, `reused.<stage>.uri`; a reused logged model becomes a model input of the run).
    A reused data stage logs its dataset inputs here too, so every run shows what it trained on."""
    import mlflow
    from mlflow.entities import LoggedModelInput, RunTag

    if not isinstance(result, StageResult):
        return
    try:
        sources = sorted(result.source_runs())
        uri = main_uri(result)
        tags = {f"{REUSED}{stage}.run_id": ", ".join(sources)} if sources else {}
        tags |= {f"{REUSED}{stage}.uri": uri} if uri else {}
        client = mlflow.MlflowClient()
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
        if model_id := links.model_id_of(uri):
            client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
        data = isinstance(result, PreparedData) and getattr(recipe, "data", None) is not None
        if data and lineage.copy_inputs(result.run_id, run_id) == 0:  # made before runs logged inputs
            lineage.log_split_inputs(run_id, recipe.data, result)
    except Exception as err:  # the stage's result stands; only its record is incomplete
        print(f"{stage}: could not record what was reused on MLflow run {run_id}: {err}")


def reused_from(tags: dict[str, str]) -> dict[str, tuple[str, str]]:
    """stage -> (source run ids, reused URI) from a run's `reused.*` tags."""
    found: dict[str, dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith(REUSED) and key.count(".") >= 2:
            stage, field = key[len(REUSED) :].rsplit(".", 1)
            found.setdefault(stage, {})[field] = value
    return {stage: (f.get("run_id", ""), f.get("uri", "")) for stage, f in sorted(found.items())}


def _flow_line(tags: dict[str, str]) -> str:
    flow_id = tags.get("prefect.flow_run_id")
    if not flow_id:
        return "no Prefect flow run (stages called directly)"
    name = tags.get("prefect.flow_run_name", flow_id)
    url = tags.get("prefect.flow_run_url")
    return (
        f"Prefect flow run {links.md_link(name, url)}"
        if url
        else f"Prefect flow run `{name}` (id `{flow_id}`)"
    )


def run_note(
    recipe: Recipe, summary: dict, tags: dict[str, str], urls: dict[str, str], ui: str, exp: str
) -> str:
    """The run's description (Markdown): flow run, model version, gate, Bento, and what it reused."""
    lines = [f"**{recipe.name}** ({recipe.kind}): {_flow_line(tags)}", ""]
    if "model version" in summary:
        lines.append(f"- model version: {links.md_link(summary['model version'], urls.get('model version'))}")
    for key in ("champion", "promotion", "deployable form"):
        if key in summary:
            value = summary[key]
            lines.append(f"- {key}: {'v' + str(value) if key == 'champion' and value != 'none' else value}")
    lines.append(f"- Bento: `{summary.get('bento') or tags.get('bento.tag') or 'none'}`")
    reused = reused_from(tags)
    if reused:
        lines.append("- reused from earlier runs (cached stages):")
        for stage, (runs, uri) in reused.items():
            shown = ", ".join(links.md_link(r[:8], links.run_url(ui, exp, r)) for r in runs.split(", ") if r)
            lines.append(f"  - {stage}: run {shown or '-'}" + (f", `{uri}`" if uri else ""))
    return "\n".join(lines) + "\n"


def version_note(
    name: str, version: str, vtags: dict[str, str], run_tags: dict[str, str], run_link: str, ui: str, exp: str
) -> str:
    """The model version's description (Markdown): where it was trained, the last run that used it, its
    deployable form and logged model, its Bento."""
    trained = vtags.get("run_id")
    lines = [f"**{name} v{version}** from recipe `{vtags.get('recipe', '-')}`", ""]
    if trained:
        lines.append(f"- trained in MLflow run {links.md_link(trained[:8], links.run_url(ui, exp, trained))}")
    lines.append(f"- last pipeline run: {run_link}, {_flow_line(run_tags)}")
    form = vtags.get("deployable.form")
    if form:
        model = vtags.get("deployable.model_uri")
        model_id = links.model_id_of(model)
        shown = links.md_link(model, links.logged_model_url(ui, exp, model_id)) if model_id else "-"
        lines.append(f"- deployable form: {form} ONNX, logged model {shown}")
    lines.append(f"- Bento: `{vtags.get('bento.tag', 'not packaged')}`")
    if "promotion.decision" in vtags:
        lines.append(f"- gate: {vtags['promotion.decision']}: {vtags.get('promotion.reason', '')}")
    return "\n".join(lines) + "\n"


def describe(recipe: Recipe, state) -> dict[str, str]:
    """At the end of a finished pipeline: write the run's and its model version's descriptions; return the
    pages the summary links to (`mlflow run`, `model version`). Best effort: never fails the run."""
    import mlflow

    ui = settings.mlflow_ui_url()
    urls = {"mlflow run": links.run_url(ui, state.experiment_id, state.run_id)}
    reg = state.registration
    if reg is not None:
        urls["model version"] = links.version_url(ui, reg.name, reg.version)
    try:
        tracking.configure()
        client = mlflow.MlflowClient()
        run = client.get_run(state.run_id)
        tags = run.data.tags
        note = run_note(recipe, state.summary, tags, urls, ui, state.experiment_id)
        client.set_tag(state.run_id, NOTE, note[:LIMIT])
        if reg is not None:
            vtags = client.get_model_version(reg.name, reg.version).tags
            run_link = links.md_link(run.info.run_name, urls["mlflow run"])
            note = version_note(reg.name, reg.version, vtags, tags, run_link, ui, state.experiment_id)
            client.update_model_version(reg.name, reg.version, description=note[:LIMIT])
    except Exception as err:
        print(f"could not write the MLflow descriptions of run {state.run_id}: {err}")
    return urls
