"""The training loop's options on the tiny classifier, with a real MLflow store: gradient accumulation gives the
same steps as one pass, bf16 autocast trains on CPU, gradient checkpointing changes memory and not results, full
fine-tuning trains every weight and logs no adapter, and a precision the device lacks fails before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpath import tracking
from llmpath.recipes import parse_recipe
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.integration


def run_training(tmp_path, model, name, **sections):
    import mlflow

    from tasks.data import prepare
    from tasks.train import train

    raw = tiny_recipe(
        tmp_path, model, name=name, train={"epochs": 2, "threads": 1} | sections.pop("train", {})
    )
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values
    recipe = parse_recipe(raw)
    experiment = tracking.ensure_experiment(recipe.experiment_name)  # points MLflow at the home's store first
    run_id = mlflow.MlflowClient().create_run(experiment).info.run_id
    trained = train(recipe, prepare(recipe, run_id), run_id)
    client = mlflow.MlflowClient()
    losses = [m.value for m in sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    return trained, client.get_run(run_id).data.params, losses


def learned(losses: list[float]) -> bool:
    """The last five steps' mean loss is below the first five's (single steps are noisy)."""
    return sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.fixture
def data_dir(home, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    return tmp_path


def test_gradient_accumulation_takes_the_same_steps_as_one_pass(data_dir, no_dropout_bert):
    whole, params, losses = run_training(data_dir, no_dropout_bert, "accum-1")
    parts, params4, losses4 = run_training(data_dir, no_dropout_bert, "accum-4", train={"grad_accum": 4})
    assert params["train.grad_accum"] == "1" and params4["train.grad_accum"] == "4"
    assert parts.steps == whole.steps == 20 and len(losses4) == len(losses) == 20
    # Same optimizer steps: the curves agree to float rounding (sums in another order), step by step.
    assert losses4 == pytest.approx(losses, rel=1e-3, abs=1e-5)
    assert learned(losses)  # it did learn, so agreeing curves mean something


def test_bf16_trains_on_cpu_close_to_fp32(data_dir, no_dropout_bert):
    _, _, fp32 = run_training(data_dir, no_dropout_bert, "fp32")
    trained, params, bf16 = run_training(data_dir, no_dropout_bert, "bf16", train={"precision": "bf16"})
    assert params["train.precision"] == "bf16"
    assert all(loss == loss for loss in bf16) and learned(bf16)
    assert bf16 != fp32  # autocast did change the arithmetic ...
    assert sum(bf16) / len(bf16) == pytest.approx(sum(fp32) / len(fp32), rel=0.05)  # ... not the learning


def test_gradient_checkpointing_keeps_the_results(data_dir, no_dropout_bert):
    _, _, plain = run_training(data_dir, no_dropout_bert, "plain")
    _, params, recomputed = run_training(
        data_dir, no_dropout_bert, "ckpt", train={"gradient_checkpointing": True}
    )
    assert params["train.gradient_checkpointing"] == "True"
    assert recomputed == pytest.approx(plain, rel=1e-4, abs=1e-6)


def test_full_finetuning_trains_every_weight_and_logs_no_adapter(data_dir, no_dropout_bert):
    import mlflow

    trained, params, losses = run_training(
        data_dir, no_dropout_bert, "full", lora={"enabled": False}, train={"learning_rate": 1e-3}
    )
    assert params["train.full_finetune"] == "True"
    assert params["train.trainable_params"] == params["train.all_params"]
    assert trained.adapter_uri is None
    assert learned(losses)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(trained.run_id)}
    assert "adapter" not in artifacts
    merged = mlflow.artifacts.download_artifacts(
        trained.model_uri
    )  # the full model, as the registry versions it
    assert list(Path(merged).rglob("model.safetensors"))
    lora_run, lora_params, _ = run_training(data_dir, no_dropout_bert, "lora")
    assert int(lora_params["train.trainable_params"]) < int(lora_params["train.all_params"])
    assert lora_run.adapter_uri is not None


def test_fp16_on_cpu_fails_before_training_and_says_what_to_set(data_dir, no_dropout_bert):
    import mlflow

    with pytest.raises(ValueError, match="fp16 needs a CUDA device; on CPU use bf16 or fp32"):
        run_training(data_dir, no_dropout_bert, "fp16", train={"precision": "fp16"})
    runs = mlflow.search_runs(experiment_names=["fp16"], output_format="list")
    assert runs and all("train_loss" not in r.data.metrics for r in runs)


def test_dpo_full_finetuning_in_bf16_with_accumulation_and_checkpointing(data_dir, smollm2_tokenizer):
    """The causal-LM path with every option at once: no adapter (TRL keeps a frozen copy as the reference),
    bf16 autocast, 2 micro-batches, activations recomputed."""
    import mlflow

    from tasks.data import prepare
    from tasks.train import train
    from tests.conftest import make_tiny_llama
    from tests.integration.test_dpo_tiny import dpo_recipe

    folder = data_dir / "tiny-llama"
    make_tiny_llama(smollm2_tokenizer, hidden=64).save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(folder)
    raw = dpo_recipe(data_dir, folder, "dpo-full")
    raw["lora"] = {"enabled": False}
    raw["train"] |= {
        "learning_rate": 2e-3,
        "precision": "bf16",
        "grad_accum": 2,
        "gradient_checkpointing": True,
        "threads": 1,
    }
    recipe = parse_recipe(raw)
    experiment = tracking.ensure_experiment(recipe.experiment_name)
    run_id = mlflow.MlflowClient().create_run(experiment).info.run_id
    trained = train(recipe, prepare(recipe, run_id), run_id)
    client = mlflow.MlflowClient()
    params = client.get_run(run_id).data.params
    assert params["train.trainable_params"] == params["train.all_params"] and trained.adapter_uri is None
    assert params["train.precision"] == "bf16" and params["train.gradient_checkpointing"] == "True"
    losses = [m.value for m in sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    assert len(losses) == 16 and losses[0] == pytest.approx(0.6931, abs=0.02)  # policy = its frozen copy
    assert sum(losses[-4:]) / 4 < losses[0] - 0.05, losses


KILLED_AT_CHECKPOINT = """
import json, sys
from llmpath.recipes import parse_recipe
from llmpath.results import PreparedData
from tasks.train import train

train(parse_recipe(json.loads(sys.argv[1])), PreparedData.model_validate_json(sys.argv[2]), sys.argv[3])
"""


def test_two_processes_train_the_one_process_curve_and_a_killed_job_resumes_where_it_ends(
    data_dir, no_dropout_bert
):
    """accelerate launch, 2 gloo processes on CPU, the same global batch of 16: the same loss curve as one
    process. Then a 2-process job killed (SIGKILL to the stage process alone: its launcher and training processes die with it) at its
    first checkpoint resumes in a
    new run from that checkpoint and ends exactly where the uninterrupted 2-process job ended."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import mlflow

    from llmpath.locks import pid_alive
    from tasks.data import prepare
    from tasks.train import train
    from tests.conftest import ROOT

    one, params1, losses1 = run_training(data_dir, no_dropout_bert, "dp", train={"threads": 1})
    two, params2, losses2 = run_training(data_dir, no_dropout_bert, "dp", train={"processes": 2})
    assert params1["train.processes"] == "1" and params2["train.processes"] == "2"
    assert two.steps == one.steps == 20 and len(losses2) == 20
    assert losses2 == pytest.approx(losses1, rel=1e-3, abs=1e-5)  # each step's loss, summed over the shards
    assert learned(losses2)
    # The lead logged the adapter and the merged model in the job's run, as one process does.
    assert two.adapter_uri == f"runs:/{two.run_id}/adapter"
    assert mlflow.MlflowClient().list_artifacts(two.run_id, "adapter")
    assert two.model_uri.startswith("models:/")

    raw = tiny_recipe(
        data_dir,
        no_dropout_bert,
        name="dp",
        train={"epochs": 2, "threads": 1, "processes": 2, "checkpoint_every": 10},
    )
    recipe = parse_recipe(raw)
    client = mlflow.MlflowClient()
    experiment = tracking.ensure_experiment(recipe.experiment_name)
    killed = client.create_run(experiment).info.run_id
    data = prepare(recipe, killed)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_AT_CHECKPOINT, json.dumps(raw), data.model_dump_json(), killed],
        cwd=ROOT,
        env=os.environ | {"LLMPATH_FAILPOINT": "checkpoint"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the launcher and both training processes: one group to kill
    )
    seen = []
    for line in proc.stdout:  # the lead says when it holds at the failpoint, after the checkpoint's upload
        seen.append(line)
        if "failpoint checkpoint: reached" in line:
            break
    # Only the stage's own process is killed: the launcher and both training processes must die with it.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert any("failpoint checkpoint: reached" in line for line in seen), "".join(seen[-40:])
    tags = client.get_run(killed).data.tags
    assert tags["llmpath.checkpoint_step"] == "10"
    lead = int(tags["llmpath.train_pid"])
    for _ in range(600):  # the kernel delivers the parent-death signals at once; reaping may take a moment
        if not pid_alive(lead):
            break
        time.sleep(0.1)
    alive = pid_alive(lead)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the launcher's group, before asserting
    assert not alive, "the lead training process outlived its killed stage"

    resumed_run = client.create_run(experiment).info.run_id
    resumed = train(recipe, data, resumed_run)
    assert resumed.resumed_from_step == 10 and resumed.steps == 20
    assert client.get_run(killed).info.status == "KILLED"
    history = client.get_metric_history(resumed_run, "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 21))
    assert resumed.final_loss == pytest.approx(two.final_loss, rel=1e-4)
