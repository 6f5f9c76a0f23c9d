"""The `dpo` flow: preference-tune a causal LM (SmolLM2 or a chat recipe's champion) with LoRA and TRL's DPO
loss, gate it on held-out preference accuracy, export it to ONNX (quantized forms ship only if they keep
PyTorch's greedy tokens) and package the OpenAI-style Bento."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.dpo.recipe import DpoRecipe
from tasks import flowrun


@flow(name="dpo", log_prints=True, flow_run_name=flowrun.run_name)
def dpo(recipe: DpoRecipe) -> dict:
    """Preference tuning: prepare_data (pairs validated, held out, rendered with the chat template) ->
    finetune (LoRA, TRL's DPO loss against the adapter-free base) -> evaluate (preference accuracy, reward
    margin, greedy answers) -> register -> promote -> export (ONNX fp32 + quantized forms) -> parity -> package."""
    expect_kind(recipe, "dpo")
    flowrun.begin(recipe)
    return stages(recipe)
