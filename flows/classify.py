"""The `classify` flow: LoRA text classification from data to a served, quantized champion."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.classify.recipe import ClassifyRecipe

__all__ = ["classify", "stages"]


@flow(name="classify", log_prints=True)
def classify(recipe: ClassifyRecipe) -> dict:
    """LoRA text classification: prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity
    -> package. Unchanged stages are reused from the cache; finetune goes to the GPU pool when it has a worker."""
    expect_kind(recipe, "classify")
    return stages(recipe)
