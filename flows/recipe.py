"""What the flow of every training kind runs: the same stages, names and hand-overs, whatever the kind. Each
stage hands the work to the recipe's kind (llmpath/kinds/) and its artifact family (llmpath/families/), so
caching, routing, retries and the registry rules are shared."""

from __future__ import annotations

from llmpath.recipes import Recipe, kind_named
from tasks.data import prepare_data
from tasks.evaluate import evaluate_base, evaluate_candidate
from tasks.export import export, parity
from tasks.package import package
from tasks.registry import gate, mark_deployable, promote, register
from tasks.runner import StageRunner, validate_routing
from tasks.runs import pipeline_run
from tasks.train import finetune


def stages(recipe: Recipe, plain: bool = False) -> dict:
    """prepare_data -> finetune -> evaluate -> register -> gate -> export -> parity -> mark_deployable ->
    package -> promote. The gate decides; `champion` moves last, once the version it chose is deployable and
    packaged, and only if nobody moved it meanwhile."""
    validate_routing(recipe)
    with pipeline_run(recipe) as run:
        stage = StageRunner(recipe, run.run_id, plain=plain)
        data = stage(prepare_data, recipe)
        trained = stage(finetune, recipe, data)
        base = stage(evaluate_base, recipe, data)
        candidate = stage(evaluate_candidate, recipe, data, trained)
        run.registration = stage(register, recipe, trained, candidate)
        gated = stage(gate, recipe, run.registration, base, candidate)
        exported = stage(export, recipe, trained)
        checked = stage(parity, recipe, data, exported, candidate)
        stage(mark_deployable, run.registration, exported, checked)
        bento = stage(package, recipe, gated.target) if gated.target else None
        run.promotion = stage(promote, gated)
        run.summary = {
            "mlflow run": run.run_id,
            "model version": f"{run.registration.name} v{run.registration.version}",
            "candidate": run.registration.version,
            "champion": run.promotion.champion_version or "none",
            "promotion": run.promotion.reason,
            f"base {recipe.eval.metric}": base.metrics[recipe.eval.metric],
            f"candidate {recipe.eval.metric}": candidate.metrics[recipe.eval.metric],
            "deployable form": f"{checked.deployable_form} ({checked.reason})",
            "bento": bento.tag if bento else "not built (no champion)",
            "train seconds": trained.seconds,
        } | stage.summary()
    return run.summary


def expect_kind(recipe: Recipe, kind: str) -> None:
    """A flow runs recipes of its own kind only (Prefect validates a form's or an API call's parameters; this
    catches a recipe object of another kind passed from Python)."""
    if not isinstance(recipe, kind_named(kind).recipe):
        raise ValueError(
            f"recipe {recipe.name!r} is a {recipe.kind} recipe; run it with the {recipe.kind!r} flow, not {kind!r}"
        )
