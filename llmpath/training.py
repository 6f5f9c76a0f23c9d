"""The training loop every training kind shares: seeded shuffles, length-grouped batches, AdamW with warmup,
checkpoints and resume, every step's loss in MLflow, the adapter and the merged model logged at the end. The
recipe's kind supplies the objective (the model it builds, the loss of a batch, the merged weights)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from collections.abc import Callable

from tqdm.auto import tqdm

from llmpath import checkpoints, faults, parallel, progress, tracking
from llmpath.metrics.plots import plot_loss
from llmpath.results import PreparedData, TrainedModel
from llmpath.sources import ResolvedModel, resolve_model
from llmpath.splits import read_split

PIP_REQUIREMENTS = ["torch==2.13.0", "transformers>=4.57,<4.58", "safetensors"]


def batches(
    rows: list[dict],
    batch_size: int,
    rng: random.Random,
    group_by_length: bool,
    length: Callable[[dict], int] = lambda row: len(row["text"]),
) -> list[list[dict]]:
    """One epoch of shuffled batches. Grouped: similar lengths share a batch (less padding, same randomness
    at the level of batches), as HF Trainer's group_by_length does."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    if group_by_length:
        pool = batch_size * 50
        order = [
            i
            for start in range(0, len(order), pool)
            for i in sorted(order[start : start + pool], key=lambda i: length(rows[i]))
        ]
    out = [[rows[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(out)
    return out


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, all) parameters: PEFT's own count for an adapter model; else counted (a model from scratch)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def compute_dtype(precision: str, device_type: str, cuda_bf16: bool = False):
    """The autocast dtype of `train.precision` on a device (None: plain fp32). Raises a ValueError that says
    what to set where the device lacks it: fp16 needs CUDA (CPU autocast has no loss scaling for it), bf16 on
    CUDA needs a device that computes in it (Ampere or later)."""
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16":
        if device_type != "cuda":
            raise ValueError("train.precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
        return torch.float16
    if device_type == "cuda" and not cuda_bf16:
        raise ValueError("train.precision bf16: this CUDA device does not compute in bf16; use fp16 or fp32")
    return torch.bfloat16


def micro_batches(batch: list[dict], parts: int) -> list[list[dict]]:
    """A batch cut into at most `parts` contiguous micro-batches of near-equal size (gradient accumulation)."""
    size = math.ceil(len(batch) / parts)
    return [batch[start : start + size] for start in range(0, len(batch), size)]


def enable_gradient_checkpointing(model) -> None:
    """Activations recomputed in the backward pass (non-reentrant: inputs need no grad, PEFT or not)."""
    if not getattr(model, "supports_gradient_checkpointing", True) or not hasattr(
        model, "gradient_checkpointing_enable"
    ):
        raise ValueError(
            f"train.gradient_checkpointing: {type(model).__name__} does not support it; set it to false"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(getattr(model, "config", None), "use_cache", None):
        model.config.use_cache = False  # a KV cache is useless in training and conflicts with recomputation


def now_ms() -> int:
    return int(time.time() * 1000)


def total_steps(rows: int, recipe) -> int:
    steps = math.ceil(math.ceil(rows / recipe.train.batch_size) * recipe.train.epochs)
    return min(steps, recipe.train.max_steps) if recipe.train.max_steps else steps


def fit(
    recipe,
    data: PreparedData,
    run_id: str,
    objective,
    key: str,
    on_step: Callable[[int], None] | None = None,
    base: ResolvedModel | None = None,
) -> TrainedModel:
    """Fine-tune with `objective`, checkpointing as it goes, then save adapter and merged model (safetensors).
    `key` names the training's inputs (the stage's cache key): if an earlier run with the same key was killed,
    continue from its last checkpoint. `base`: the weights to start from (default: the recipe's `model.base`)."""
    import mlflow
    import torch
    from mlflow.entities import Metric
    from transformers import get_linear_schedule_with_warmup

    cfg = recipe.train
    cuda = torch.cuda.is_available()  # a GPU worker trains on its GPU
    # In a data-parallel job (train.processes > 1, started by the finetune stage) this is one of its
    # processes: each computes its share of every batch; only the lead writes to MLflow.
    group = parallel.join("cuda" if cuda else "cpu")
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // group.local_world))
    base = base or resolve_model(recipe.model.base, recipe.model.revision)
    rows = read_split(data, "train")
    device = torch.device("cuda", group.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = compute_dtype(cfg.precision, device.type, cuda_bf16)  # fails before the model loads
    torch.manual_seed(cfg.seed)
    model, tokenizer = objective.build(recipe, base.path, device)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    # fp16 needs loss scaling (its range underflows small gradients); bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    trainable, total = parameter_counts(model)
    steps = total_steps(len(rows), recipe)
    params = [p for p in model.parameters() if p.requires_grad]
    parallel.broadcast_parameters(params, group)
    if group.rank:  # dropout differs between the processes, as it does between the rows of one batch
        torch.manual_seed(cfg.seed + 1000 * group.rank)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(steps * cfg.warmup_ratio), steps)
    client = mlflow.MlflowClient()
    tracking.configure()
    found = parallel.broadcast_object(checkpoints.find(key, run_id) if group.lead else None, group)
    losses: list[tuple[int, float]] = []
    start = tokens = 0
    if found is not None:
        checkpoints.load(found, model, optimizer, schedule, group.rank)
        rng_states = parallel.gather_object(torch.get_rng_state(), group)
        if group.lead:
            losses = checkpoints.take_over(found, run_id, model, optimizer, schedule, rng_states)
            print(f"resuming finetune from step {found.step}/{steps} (checkpoint of run {found.run_id})")
        start = found.step
    rng = random.Random(cfg.seed)  # the same batches in every process; each takes its share
    pending: list[Metric] = []
    started = time.perf_counter()
    with tracking.use_run(run_id) if group.lead else contextlib.nullcontext():
        if group.lead:
            _start_logging(run_id, key, model, steps, trainable, total, device, cfg, group, start)
        model.train()
        step = seen = 0
        with tqdm(total=steps, initial=start, desc="finetune", unit="step", disable=not group.lead) as bar:
            while step < steps:
                for batch in batches(rows, cfg.batch_size, rng, cfg.group_by_length, objective.length):
                    seen += 1
                    if seen <= start:  # replay the same shuffles up to the checkpoint, without computing
                        step = seen
                        continue
                    # Gradient accumulation: each micro-batch's mean loss weighted by its share of the
                    # batch's rows, so the summed gradients are the whole batch's (one optimizer step);
                    # data-parallel: this process's rows only, the shares summed across the processes.
                    batch_loss = n_tokens = 0.0
                    for part in micro_batches(parallel.shard(batch, group.rank, group.world), cfg.grad_accum):
                        with torch.autocast(
                            device.type, dtype=dtype or torch.float32, enabled=dtype is not None
                        ):
                            loss, part_tokens = objective.loss(model, tokenizer, part, recipe, device)
                        loss = loss.float() * (len(part) / len(batch))
                        scaler.scale(loss).backward()
                        batch_loss += loss.item()
                        n_tokens += part_tokens
                    parallel.sync_gradients(params, group)
                    batch_loss, n_tokens = parallel.sum_values([batch_loss, n_tokens], group, device)
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    scaler.step(optimizer)
                    scaler.update()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    tokens += int(n_tokens)
                    losses.append((step, batch_loss))
                    checkpoint = step % cfg.checkpoint_every == 0 and step < steps
                    rng_states = parallel.gather_object(torch.get_rng_state(), group) if checkpoint else None
                    if group.lead:
                        pending = _log_step(
                            run_id, client, objective, schedule, losses, pending, step, steps, cfg, bar
                        )
                    if checkpoint and group.lead:
                        client.log_batch(run_id, metrics=pending)
                        pending = []
                        checkpoints.save(run_id, step, model, optimizer, schedule, rng_states)
                        faults.point("checkpoint")  # the fault test kills a run here: a checkpoint in force
                    if on_step is not None:
                        on_step(step)
                    if step >= steps:
                        break
        seconds = time.perf_counter() - started
        if not group.lead:  # the lead saves and logs the trained model
            parallel.barrier(group)
            parallel.leave(group)
            return None
        result = _save_trained(
            recipe, model, tokenizer, objective, base, run_id, losses, steps, start, seconds
        )
        tokens_per_second = tokens / max(seconds, 1e-9)
        mlflow.log_metrics(
            {
                "train_seconds": seconds,
                "train_examples_per_second": (steps - start) * cfg.batch_size / max(seconds, 1e-9),
                "train_tokens_per_second": tokens_per_second,
            }
        )
        tracking.log_figure(
            plot_loss(*zip(*losses, strict=True), title=f"{recipe.name}: training loss"), "plots/loss.png"
        )
    parallel.barrier(group)
    parallel.leave(group)
    return result


def _start_logging(run_id, key, model, steps, trainable, total, device, cfg, group, start) -> None:
    import mlflow

    checkpoints.claim(run_id, key)  # key, trainer and heartbeat: a live run's checkpoint is never taken
    mlflow.log_params(
        {
            "train.total_steps": steps,
            "train.trainable_params": trainable,
            "train.all_params": total,
            "train.device": str(device),
            "train.precision": cfg.precision,
            "train.grad_accum": cfg.grad_accum,
            "train.processes": group.world,
            "train.gradient_checkpointing": cfg.gradient_checkpointing,
            "train.full_finetune": not hasattr(model, "peft_config"),
            # QLoRA: how many frozen base layers train in 4-/8-bit (bitsandbytes); 0 for plain LoRA.
            "train.quantized_layers": sum(
                type(m).__module__.startswith("bitsandbytes.") for m in model.modules()
            ),
        }
    )
    if start:
        mlflow.log_metric("train.resumed_from_step", start)


def _log_step(run_id, client, objective, schedule, losses, pending, step, steps, cfg, bar) -> list:
    """Queue the step's metrics, write them every `log_every` steps; returns what is still queued."""
    from mlflow.entities import Metric

    pending = pending + [
        Metric("train_loss", losses[-1][1], now_ms(), step),
        Metric("learning_rate", schedule.get_last_lr()[0], now_ms(), step),
    ]
    # An objective may report statistics of its own per step (dpo: TRL's rewards and margins; in a
    # data-parallel job, the lead's share of the batch).
    extra = objective.step_metrics() if hasattr(objective, "step_metrics") else {}
    pending += [Metric(name, value, now_ms(), step) for name, value in extra.items()]
    bar.update(1)
    progress.update(step, steps, "steps")
    checkpoints.beat(run_id)
    if step % cfg.log_every == 0 or step == steps:
        # Every step's loss is logged; writes are batched to spare the tracking store.
        client.log_batch(run_id, metrics=pending)
        pending = []
        recent = [loss for _, loss in losses[-cfg.log_every :]]
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
    return pending


def _save_trained(recipe, model, tokenizer, objective, base, run_id, losses, steps, start, seconds):
    """Log the adapter (if any) and the merged model (an MLflow Model) in the active run."""
    import mlflow

    out_dir = tracking.scratch("train-")
    # A model trained whole (no PEFT adapter, e.g. pretrain) is its own merged form: one copy, no `adapter`.
    has_adapter = hasattr(model, "peft_config")
    if has_adapter:
        model.save_pretrained(out_dir / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "adapter")
    merged = objective.merged(model, recipe, base.path, out_dir / "adapter").to("cpu")
    merged.save_pretrained(out_dir / "model", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "model")
    if has_adapter:
        mlflow.log_artifacts(str(out_dir / "adapter"), "adapter")
    # The merged model is an MLflow Model (transformers flavour) so the registry can version it as is.
    logged = mlflow.transformers.log_model(
        str(out_dir / "model"),
        name="model",
        task=objective.task,
        pip_requirements=PIP_REQUIREMENTS,
        params={"base_revision": base.revision},
    )
    shutil.rmtree(out_dir, ignore_errors=True)  # logged: the store has it now
    checkpoints.retire(run_id)  # finished: the stage cache reuses this result from now on
    return TrainedModel(
        run_id=run_id,
        model_uri=logged.model_uri,
        adapter_uri=tracking.artifact_uri(run_id, "adapter") if has_adapter else None,
        base_revision=base.revision,
        steps=steps,
        final_loss=losses[-1][1],
        seconds=seconds,
        resumed_from_step=start,
    )
