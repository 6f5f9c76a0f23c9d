"""The `classify` flow: LoRA text classification from data to a served, quantized champion."""

from __future__ import annotations

from prefect import flow

from llmpath.config import Recipe
from tasks.data import prepare_data
from tasks.evaluate import evaluate_base, evaluate_candidate
from tasks.export import export, parity
from tasks.package import package
from tasks.registry import mark_deployable, promote, register
from tasks.runner import StageRunner, validate_routing
from tasks.runs import pipeline_run
from tasks.train import finetune


def stages(recipe: Recipe, plain: bool = False) -> dict:
    """prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity -> package."""
    validate_routing(recipe)
    with pipeline_run(recipe) as run:
        stage = StageRunner(recipe, run.run_id, plain=plain)
        data = stage(prepare_data, recipe)
        trained = stage(finetune, recipe, data)
        base = stage(evaluate_base, recipe, data)
        candidate = stage(evaluate_candidate, recipe, data, trained)
        run.registration = stage(register, recipe, trained, candidate)
        run.promotion = stage(promote, recipe, run.registration, base, candidate)
        exported = stage(export, recipe, trained)
        checked = stage(parity, recipe, data, exported, candidate)
        stage(mark_deployable, run.registration, exported, checked)
        bento = stage(package, recipe) if run.promotion.champion_version else None
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


@flow(name="classify", log_prints=True)
def classify(recipe: Recipe) -> dict:
    """LoRA text classification: prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity
    -> package. Unchanged stages are reused from the cache; finetune goes to the GPU pool when it has a worker."""
    return stages(recipe)
