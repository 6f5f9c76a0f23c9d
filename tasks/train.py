"""Stage `finetune`: LoRA on the base model for sequence classification, logged step by step to MLflow."""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from pathlib import Path

from prefect import task
from tqdm.auto import tqdm

from llmpath import tracking
from llmpath.classifier import load_for_classification
from llmpath.config import Recipe
from llmpath.metrics import plot_loss
from llmpath.sources import resolve_model
from tasks.results import PreparedData, TrainedModel

PIP_REQUIREMENTS = ["torch==2.13.0", "transformers>=4.57,<4.58", "safetensors"]


def read_split(data: PreparedData, name: str) -> list[dict]:
    import pandas as pd

    folder = tracking.download(data.uri)
    return pd.read_parquet(folder / f"{name}.parquet").to_dict("records")


def batches(rows: list[dict], batch_size: int, rng: random.Random, group_by_length: bool) -> list[list[dict]]:
    """One epoch of shuffled batches. Grouped: similar lengths share a batch (less padding, same randomness
    at the level of batches), as HF Trainer's group_by_length does."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    if group_by_length:
        pool = batch_size * 50
        order = [
            i
            for start in range(0, len(order), pool)
            for i in sorted(order[start : start + pool], key=lambda i: len(rows[i]["text"]))
        ]
    out = [[rows[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(out)
    return out


def _peft_model(model, recipe: Recipe):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # keeps the new classifier head trainable (modules_to_save)
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=list(recipe.lora.target_modules),
    )
    return get_peft_model(model, config)


def now_ms() -> int:
    return int(time.time() * 1000)


def total_steps(rows: int, recipe: Recipe) -> int:
    steps = math.ceil(math.ceil(rows / recipe.train.batch_size) * recipe.train.epochs)
    return min(steps, recipe.train.max_steps) if recipe.train.max_steps else steps


def train(recipe: Recipe, data: PreparedData) -> TrainedModel:
    """Fine-tune a LoRA adapter, then save adapter and merged model (safetensors) to the run."""
    import mlflow
    import torch
    from mlflow.entities import Metric
    from transformers import get_linear_schedule_with_warmup

    cfg = recipe.train
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    rows = read_split(data, "train")
    model, tokenizer = load_for_classification(base.path, recipe.data.labels, seed=cfg.seed)
    model = _peft_model(model, recipe)
    trainable, total = model.get_nb_trainable_parameters()
    steps = total_steps(len(rows), recipe)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(steps * cfg.warmup_ratio), steps)
    rng = random.Random(cfg.seed)
    losses: list[tuple[int, float]] = []
    pending: list[Metric] = []
    client = mlflow.MlflowClient()
    started = time.perf_counter()
    with tracking.use_run(data.run_id):
        mlflow.log_params(
            {"train.total_steps": steps, "train.trainable_params": trainable, "train.all_params": total}
        )
        model.train()
        step = 0
        with tqdm(total=steps, desc="finetune", unit="step") as bar:
            while step < steps:
                for batch in batches(rows, cfg.batch_size, rng, cfg.group_by_length):
                    enc = tokenizer(
                        [r["text"] for r in batch],
                        truncation=True,
                        max_length=recipe.model.max_length,
                        padding=True,
                        return_tensors="pt",
                    )
                    out = model(**enc, labels=torch.tensor([int(r["label"]) for r in batch]))
                    out.loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    losses.append((step, out.loss.item()))
                    pending += [
                        Metric("train_loss", losses[-1][1], now_ms(), step),
                        Metric("learning_rate", schedule.get_last_lr()[0], now_ms(), step),
                    ]
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == steps:
                        # Every step's loss is logged; writes are batched to spare the tracking store.
                        client.log_batch(data.run_id, metrics=pending)
                        pending = []
                        recent = [loss for _, loss in losses[-cfg.log_every :]]
                        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                    if step >= steps:
                        break
        seconds = time.perf_counter() - started
        out_dir = Path(tempfile.mkdtemp(prefix="llmpath-train-"))
        model.save_pretrained(out_dir / "adapter", safe_serialization=True)
        merged = model.merge_and_unload()
        merged.save_pretrained(out_dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "model")
        tokenizer.save_pretrained(out_dir / "adapter")
        mlflow.log_artifacts(str(out_dir / "adapter"), "adapter")
        # The merged model is an MLflow Model (transformers flavour) so the registry can version it as is.
        logged = mlflow.transformers.log_model(
            str(out_dir / "model"),
            name="model",
            task="text-classification",
            pip_requirements=PIP_REQUIREMENTS,
            params={"base_revision": base.revision},
        )
        mlflow.log_metrics(
            {"train_seconds": seconds, "train_examples_per_second": steps * cfg.batch_size / seconds}
        )
        tracking.log_figure(
            plot_loss(*zip(*losses, strict=True), title=f"{recipe.name}: training loss"), "plots/loss.png"
        )
    return TrainedModel(
        run_id=data.run_id,
        model_uri=logged.model_uri,
        adapter_uri=tracking.artifact_uri(data.run_id, "adapter"),
        base_revision=base.revision,
        steps=steps,
        final_loss=losses[-1][1],
        seconds=seconds,
    )


finetune = task(train, name="finetune", tags=["hardware:gpu-preferred"])
