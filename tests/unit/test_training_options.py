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
    with pytest.raises(ValidationError, match="batch_size must be at least processes x grad_accum"):
        TrainConfig(batch_size=8, grad_accum=9)
    assert TrainConfig(batch_size=8, grad_accum=2, processes=4).processes == 4
    with pytest.raises(ValidationError, match=r"shared among 5 process\(es\)"):
        TrainConfig(batch_size=8, grad_accum=2, processes=5)
    with pytest.raises(ValidationError, match="processes"):
        TrainConfig(processes=0)
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


@pytest.mark.parametrize(("rows", "world"), [(16, 2), (10, 3), (1, 2), (5, 8)])
def test_data_parallel_shards_split_a_batch_exactly_once(rows, world):
    from llmpath.parallel import shard

    batch = list(range(rows))
    parts = [shard(batch, rank, world) for rank in range(world)]
    assert sorted(row for part in parts for row in part) == batch  # every row, none twice
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # shares differ by a row at most


def test_a_zombie_process_counts_as_dead():
    """A killed trainer reparented to an init that does not reap it stays a zombie: its checkpoint must be
    taken over all the same."""
    import os
    import subprocess

    from llmpath.locks import pid_alive

    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    try:
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert pid_alive(os.getpid())


def test_a_recipe_travels_to_the_training_processes_unchanged(tmp_path):
    """The data-parallel launcher hands each process the recipe as JSON: it must validate back to itself."""
    from llmpath.recipes import parse_recipe
    from tests.conftest import tiny_recipe

    recipe = parse_recipe(tiny_recipe(tmp_path, tmp_path, train={"processes": 2, "precision": "bf16"}))
    again = parse_recipe(recipe.model_dump(mode="json"))
    assert again == recipe and again.train.processes == 2
