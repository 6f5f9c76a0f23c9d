"""The `classify` flow: LoRA text classification from data to a served, quantized champion."""

from __future__ import annotations

from prefect import flow

from llmpath.config import Recipe
from tasks.data import prepare_data
from tasks.evaluate import evaluate_base, evaluate_candidate
from tasks.export import export, parity
from tasks.package import package
from tasks.registry import promote, register
from tasks.runs import pipeline_run
from tasks.train import finetune


@flow(name="classify", log_prints=True)
def classify(recipe: Recipe) -> dict:
    """prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity -> package."""
    with pipeline_run(recipe) as run:
        data = prepare_data(recipe, run.run_id)
        trained = finetune(recipe, data)
        base = evaluate_base(recipe, data)
        candidate = evaluate_candidate(recipe, data, trained)
        run.registration = register(recipe, trained, candidate)
        run.promotion = promote(recipe, run.registration, base, candidate)
        exported = export(recipe, run.registration, trained)
        checked = parity(recipe, data, run.registration, exported, candidate)
        bento = package(recipe) if run.promotion.champion_version else None
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
        }
    return run.summary
