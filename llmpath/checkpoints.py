"""Training checkpoints in the MLflow run, so a killed training stage resumes instead of starting over.

A checkpoint is the trainable weights as safetensors (the adapter's; a model trained whole, from scratch: all), the optimizer and schedule state and the torch RNG
(loaded with `weights_only=True`), uploaded under `checkpoints/step-N/` of the training run. Only after the upload
does the run's `llmpath.checkpoint_step` tag move, so a kill mid-upload leaves the previous checkpoint in force.
A later run with the same finetune cache key (same data, model, settings and code) finds it by that key, takes it
over (copies it into its own run, the old run stops offering it) and continues. A run whose training finishes
stops offering its checkpoints: from then on the stage cache reuses its result.

Only a dead run's checkpoint is taken over: a run that trains says who it is (host, pid) and beats a heartbeat
tag while it trains. A run still training with the same key (its process alive on this host, or its heartbeat
fresh on another) keeps its checkpoint, and the new run starts fresh and says why.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from llmpath import tracking
from llmpath.locks import pid_alive

KEY_TAG = "llmpath.finetune_key"
STEP_TAG = "llmpath.checkpoint_step"
HOST_TAG, PID_TAG, HEARTBEAT_TAG = "llmpath.train_host", "llmpath.train_pid", "llmpath.heartbeat"
HEARTBEAT_EVERY = 15.0  # seconds between heartbeats while training
STALE_AFTER = 600.0  # a heartbeat older than this (another host) means its trainer died
_LAST_BEAT: dict[str, float] = {}


@dataclass(frozen=True)
class Checkpoint:
    run_id: str
    step: int
    status: str

    @property
    def uri(self) -> str:
        return tracking.artifact_uri(self.run_id, f"checkpoints/step-{self.step:06d}")


def save(run_id: str, step: int, model, optimizer, schedule, rng_states: list | None = None) -> None:
    """Upload a checkpoint. `rng_states`: every data-parallel process's torch RNG state, by rank (default:
    this process's own): `rng.pt` is rank 0's, `rng-N.pt` rank N's."""
    import mlflow
    import torch

    folder = tracking.scratch("ckpt-")
    _save_weights(model, folder)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(schedule.state_dict(), folder / "schedule.pt")
    for rank, state in enumerate(rng_states or [torch.get_rng_state()]):
        torch.save(state, folder / (f"rng-{rank}.pt" if rank else "rng.pt"))
    client = mlflow.MlflowClient()
    client.log_artifacts(run_id, str(folder), f"checkpoints/step-{step:06d}")
    client.set_tag(run_id, STEP_TAG, str(step))


def _save_weights(model, folder) -> None:
    """The adapter's weights (`adapter.safetensors`), or a model without one whole (`model.safetensors`;
    safetensors' own writer, which keeps tied weights once)."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        weights = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(weights, folder / "adapter.safetensors")
    else:
        from safetensors.torch import save_model

        save_model(model, str(folder / "model.safetensors"))


def _load_weights(model, folder) -> None:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_model

        load_model(model, str(folder / "model.safetensors"))
    else:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(folder / "adapter.safetensors"))


def claim(run_id: str, key: str) -> None:
    """This run trains for `key`: record who trains it and beat the first heartbeat."""
    import mlflow

    client = mlflow.MlflowClient()
    for tag, value in {KEY_TAG: key, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}.items():
        client.set_tag(run_id, tag, value)
    beat(run_id, force=True)


def beat(run_id: str, force: bool = False) -> None:
    """Say this run is still training (at most every HEARTBEAT_EVERY seconds)."""
    import mlflow

    now = time.time()
    if force or now - _LAST_BEAT.get(run_id, 0.0) >= HEARTBEAT_EVERY:
        mlflow.MlflowClient().set_tag(run_id, HEARTBEAT_TAG, f"{now:.0f}")
        _LAST_BEAT[run_id] = now


def still_training(status: str, tags: dict[str, str], now: float | None = None) -> str | None:
    """Why the run that owns a checkpoint is alive (so its checkpoint is not taken over), or None if dead."""
    if status != "RUNNING":
        return None
    host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
    if host == socket.gethostname() and pid.isdigit():
        return f"its process {pid} is alive on this host" if pid_alive(int(pid)) else None
    age = (now or time.time()) - float(tags.get(HEARTBEAT_TAG, "0") or 0)
    return f"its heartbeat on {host} is {age:.0f} s old" if age < STALE_AFTER else None


def find(key: str, current_run_id: str) -> Checkpoint | None:
    """The furthest checkpoint a dead or finished run of this experiment left for the same finetune key.
    A run still training keeps its own: this one starts fresh rather than train the same steps twice over."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_run(current_run_id).info.experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{KEY_TAG}` = '{key}'")
    found = []
    for r in runs:
        if r.info.run_id == current_run_id or STEP_TAG not in r.data.tags:
            continue
        step = int(r.data.tags[STEP_TAG])
        alive = still_training(r.info.status, r.data.tags)
        if alive:
            print(
                f"run {r.info.run_id} is still training the same model ({alive}): not taking over its "
                f"checkpoint at step {step}; training from the start"
            )
            continue
        found.append(Checkpoint(r.info.run_id, step, r.info.status))
    return max(found, key=lambda c: c.step, default=None)


def restore(
    found: Checkpoint, model, optimizer, schedule, run_id: str
) -> tuple[int, list[tuple[int, float]]]:
    """Load the checkpoint into the model, optimizer and schedule; copy its loss history into this run.
    Returns the step to continue from and the losses so far."""
    load(found, model, optimizer, schedule)
    return found.step, take_over(found, run_id, model, optimizer, schedule)


def load(found: Checkpoint, model, optimizer, schedule, rank: int = 0) -> None:
    """Load the checkpoint's weights, optimizer and schedule state, and the RNG state of process `rank`
    (rank 0's where the checkpoint has none for it: it was saved by fewer processes)."""
    import torch

    folder = tracking.download(found.uri, fresh=True)  # a checkpoint path is rewritten
    _load_weights(model, folder)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    schedule.load_state_dict(torch.load(folder / "schedule.pt", weights_only=True))
    rng = folder / f"rng-{rank}.pt"
    torch.set_rng_state(torch.load(rng if rank and rng.is_file() else folder / "rng.pt", weights_only=True))


def take_over(
    found: Checkpoint, run_id: str, model, optimizer, schedule, rng_states: list | None = None
) -> list[tuple[int, float]]:
    """This run offers the loaded checkpoint from now on (in case it is killed too), the old run no more;
    its loss history up to the checkpoint is copied into this run and returned."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    history = [m for m in client.get_metric_history(found.run_id, "train_loss") if m.step <= found.step]
    history.sort(key=lambda m: m.step)
    for start in range(0, len(history), 500):
        chunk = history[start : start + 500]
        client.log_batch(run_id, metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in chunk])
    save(run_id, found.step, model, optimizer, schedule, rng_states)
    retire(found.run_id)
    client.set_tag(found.run_id, "llmpath.resumed_by", run_id)
    if found.status == "RUNNING":  # its process was killed and never closed the run
        client.set_terminated(found.run_id, "KILLED")
    return [(m.step, m.value) for m in history]


def retire(run_id: str) -> None:
    """The run no longer offers a checkpoint to resume from (its training finished or another run took over)."""
    import mlflow

    client = mlflow.MlflowClient()
    if STEP_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, STEP_TAG)
