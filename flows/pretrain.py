"""The `pretrain` flow: train a small GPT from scratch with its own BPE tokenizer, gate it on held-out
perplexity, export it to ONNX (with quantized forms that ship only if they keep PyTorch's greedy tokens) and
package the OpenAI-style Bento."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind, stages
from llmpath.kinds.pretrain.recipe import PretrainRecipe
from tasks import flowrun


@flow(name="pretrain", log_prints=True, flow_run_name=flowrun.run_name)
def pretrain(recipe: PretrainRecipe) -> dict:
    """Pretraining: prepare_data (documents, held-out split, BPE tokenizer, packed blocks) -> finetune (the
    whole model from its random init) -> evaluate (held-out perplexity beside a unigram baseline, samples) ->
    register -> promote -> export (ONNX fp32 + quantized forms) -> parity -> package."""
    expect_kind(recipe, "pretrain")
    flowrun.begin(recipe)
    return stages(recipe)
