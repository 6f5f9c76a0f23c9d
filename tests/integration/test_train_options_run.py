"""The training loop's options on the tiny classifier, with a real MLflow store: gradient accumulation gives the
same steps as one pass, bf16 autocast trains on CPU, gradient checkpointing changes memory and not results, full
fine-tuning trains every weight and logs no adapter, and a precision the device lacks fails before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmpath import tracking
from llmpath.recipes import parse_recipe
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert, tmp_path_factory):
    """The tiny BERT without dropout: runs that cut batches differently draw the same (no) random masks."""
    out = tmp_path_factory.mktemp("tiny-bert-nodrop")
    shutil.copytree(tiny_bert, out, dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (out / "config.json").write_text(json.dumps(config))
    return out


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
