"""The `classify` flow: LoRA text classification from data to a served, quantized champion."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.classify.recipe import ClassifyRecipe
from tasks import flowrun

__all__ = ["classify", "stages"]


@flow(name="classify", log_prints=True, flow_run_name=flowrun.run_name)
def classify(recipe: ClassifyRecipe) -> dict:
    """LoRA text classification: prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity
    -> package. Unchanged stages are reused from the cache; finetune goes to the GPU pool when it has a worker."""
    expect_kind(recipe, "classify")
    flowrun.begin(recipe)
    return stages(recipe)
