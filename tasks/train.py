"""Stage `finetune`: the recipe's kind supplies the training objective, the shared loop (llmpath/training.py)
runs it with checkpoints and resume; goes to the GPU pool when it has a worker."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llmpath import parallel, progress, tracking
from llmpath.recipes import Recipe, kind_of
from llmpath.results import PreparedData, TrainedModel
from llmpath.training import compute_dtype, fit
from tasks.stages import kind_version, stage, stage_key

__all__ = ["finetune", "train", "train_key"]

_PROGRESS = re.compile(r"llmpath\.progress ([0-9.]+) ([0-9.]+)$")


def train(
    recipe: Recipe,
    data: PreparedData,
    run_id: str,
    on_step: Callable[[int], None] | None = None,
) -> TrainedModel:
    """Fine-tune the recipe's model with its kind's objective. If an earlier run with the same inputs (this
    stage's cache key) was killed, continue from its last checkpoint."""
    if recipe.train.processes > 1 and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return launch(recipe, data, run_id)
    key = stage_key(finetune, recipe=recipe, data=data)
    kind = kind_of(recipe)
    return fit(recipe, data, run_id, kind.objective(recipe), key, on_step, base=kind.base_model(recipe))


def launch(recipe: Recipe, data: PreparedData, run_id: str) -> TrainedModel:
    """Data-parallel training: `accelerate launch` starts `train.processes` processes of tasks/train_worker.py
    on this host (gloo on CPU, NCCL with one GPU each); each runs `train` on its share of every batch, the lead
    writes to MLflow and hands back the result. Its output is relayed line by line, its progress too."""
    import torch

    n = recipe.train.processes
    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < n:
        raise ValueError(
            f"train.processes is {n} but this host has {torch.cuda.device_count()} CUDA device(s): one process "
            "per GPU; set train.processes to at most that"
        )
    compute_dtype(recipe.train.precision, "cuda" if cuda else "cpu", cuda and torch.cuda.is_bf16_supported())
    folder = tracking.scratch("parallel-")
    spec = {
        "recipe": recipe.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "run_id": run_id,
        "result": str(folder / "result.json"),
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    threads = recipe.train.threads or max(1, (os.cpu_count() or 1) // n)
    command = [
        *[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"],
        *[
            "--num_processes",
            str(n),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(_free_port()),
        ],
        *["--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(threads)],
        *["-m", "tasks.train_worker", str(folder / "spec.json")],
    ]
    root = Path(__file__).resolve().parent.parent  # the checkout holding tasks/ (a worker's pulled code)
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": tracking.configure(),  # the store this process uses, whatever set it
        "PYTHONUNBUFFERED": "1",
    }
    print(
        f"finetune: data-parallel over {n} processes ({'NCCL' if cuda else 'gloo'}, {threads} thread(s) each)"
    )
    with subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=parallel.die_with_parent,  # a killed stage leaves no launcher (nor training) behind
    ) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if match := _PROGRESS.search(line):  # after a tqdm bar's carriage return, maybe
                progress.update(float(match.group(1)), float(match.group(2)), "steps")
                line = line[: match.start()]
            if line.strip():
                print(line)
        code = proc.wait()
    result = Path(spec["result"])
    outcome = json.loads(result.read_text()) if result.is_file() else {}
    if code != 0 or "trained" not in outcome:
        reason = outcome.get("error") or "the lines above say why"
        raise RuntimeError(f"finetune over {n} processes failed (exit code {code}): {reason}")
    return TrainedModel.model_validate(outcome["trained"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_key(recipe: Recipe, data: PreparedData, **_) -> dict:
    """What decides the trained weights. Logging cadence, thread and process counts do not (the processes of
    a data-parallel job share the same global batches): a checkpoint resumes with any number of them."""
    settings = recipe.train.model_dump(exclude={"log_every", "threads", "checkpoint_every", "processes"})
    return {
        "data": data.fingerprint,
        "kind": recipe.kind,
        "base": data.base_revision,
        "model": recipe.model.model_dump(),
        "lora": lora.model_dump() if (lora := getattr(recipe, "lora", None)) else None,  # none from scratch
        "train": settings,
    } | kind_of(recipe).train_key(recipe)


finetune = stage(train, name="finetune", key=train_key, hardware="gpu-preferred", version=kind_version)
