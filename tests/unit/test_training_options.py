"""Pure logic of the training options: which autocast dtype each precision gets on each device, how a batch is
cut into micro-batches, what a recipe may not combine, and that gradient checkpointing really turns on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmpath.config import TrainConfig
from llmpath.families.causal_lm.config import CausalLora
from llmpath.training import compute_dtype, enable_gradient_checkpointing, micro_batches

pytestmark = pytest.mark.unit


def test_each_precision_gets_its_dtype_where_the_device_has_it():
    import torch

    assert compute_dtype("fp32", "cpu") is None
    assert compute_dtype("bf16", "cpu") is torch.bfloat16
    assert compute_dtype("bf16", "cuda", cuda_bf16=True) is torch.bfloat16
    assert compute_dtype("fp16", "cuda") is torch.float16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device; on CPU use bf16 or fp32"):
        compute_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="does not compute in bf16; use fp16 or fp32"):
        compute_dtype("bf16", "cuda", cuda_bf16=False)


@pytest.mark.parametrize(
    ("rows", "parts", "sizes"), [(16, 1, [16]), (16, 4, [4] * 4), (10, 4, [3, 3, 3, 1]), (3, 3, [1] * 3)]
)
def test_micro_batches_cover_the_batch_in_order(rows, parts, sizes):
    batch = [{"i": i} for i in range(rows)]
    cut = micro_batches(batch, parts)
    assert [len(p) for p in cut] == sizes
    assert [row for part in cut for row in part] == batch


def test_recipe_settings_that_cannot_work_are_refused():
    assert TrainConfig(batch_size=8, grad_accum=8).grad_accum == 8
    with pytest.raises(ValidationError, match=r"grad_accum \(9\) .* at most batch_size"):
        TrainConfig(batch_size=8, grad_accum=9)
    with pytest.raises(ValidationError, match="precision"):
        TrainConfig(precision="int8")
    assert CausalLora(enabled=False).enabled is False
    with pytest.raises(ValidationError, match="quantization: none for full fine-tuning"):
        CausalLora(enabled=False, quantization="4bit")


def test_gradient_checkpointing_turns_on_through_a_peft_adapter(tiny_llama):
    from llmpath.causal import with_lora

    model = with_lora(tiny_llama, 4, 8, 0.0, ["q_proj", "v_proj"], quantized=False)
    assert not model.base_model.model.is_gradient_checkpointing
    enable_gradient_checkpointing(model)
    assert model.base_model.model.is_gradient_checkpointing
    assert model.base_model.model.config.use_cache is False


def test_a_model_without_gradient_checkpointing_is_refused_by_name():
    import torch

    with pytest.raises(ValueError, match="Linear does not support it; set it to false"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))
