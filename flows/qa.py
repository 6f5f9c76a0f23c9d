"""The `qa` flow: extractive question answering from SQuAD to a served ONNX span reader."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.qa.recipe import QaRecipe
from tasks import flowrun

__all__ = ["qa", "stages"]


@flow(name="qa", log_prints=True, flow_run_name=flowrun.run_name)
def qa(recipe: QaRecipe) -> dict:
    """Extractive QA: prepare_data -> finetune -> evaluate -> register -> promote -> export -> parity -> package.
    Unchanged stages are reused from the cache; finetune goes to the GPU pool when it has a worker."""
    expect_kind(recipe, "qa")
    flowrun.begin(recipe)
    return stages(recipe)
