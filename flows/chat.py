"""The `chat` flow: instruction-tune a decoder LM with LoRA or QLoRA, gate it on ROUGE-L, export it to ONNX
(with quantized forms that ship only if they keep PyTorch's greedy tokens) and package an OpenAI-style Bento."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.chat.recipe import ChatRecipe
from tasks import flowrun


@flow(name="chat", log_prints=True, flow_run_name=flowrun.run_name)
def chat(recipe: ChatRecipe) -> dict:
    """Chat tuning: prepare_data -> finetune (LoRA; QLoRA with `lora.quantization`) -> evaluate (loss,
    perplexity, ROUGE-L, answers table) -> register -> promote -> export (ONNX fp32 + quantized forms) ->
    parity -> package. finetune goes to the GPU pool when it has a worker."""
    expect_kind(recipe, "chat")
    flowrun.begin(recipe)
    return stages(recipe)
