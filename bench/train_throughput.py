"""Training throughput: the pipeline's `finetune` stage vs a bare peft loop on the same data, in one run.

Usage: python bench/train_throughput.py [--recipe recipes/chat-alpaca-smoke.yaml] [--steps 12] [--rounds 2]
Needs LLMPATH_DATA_DIR. Uses a throwaway MLflow store. Writes bench/results/train_throughput.{json,md};
BENCHMARKS.md quotes the markdown. Target: the stage at 0.95 or more of the bare loop's tokens/s.

Both sides train the same LoRA on the same prepared rows, in the same batches (the stage's own batching, so
padding is identical), with the same optimizer, for the same number of steps; the clock covers the training
steps only (not loading or saving), and tokens are the non-padding tokens of the batches. What the stage adds is
its bookkeeping: per-step loss and learning-rate to MLflow, checkpoints, the progress bar. Rounds alternate
bare and stage so machine-load drift hits both alike; each side runs in a fresh process.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def bare(recipe, data) -> dict:
    """A plain PyTorch + peft loop: no tracking, no checkpoints, no progress bar."""
    import random

    import torch

    from llmpath.causal import as_rendered, load_causal, with_lora
    from llmpath.chat import pad_batch
    from llmpath.sources import resolve_model
    from llmpath.splits import read_split
    from llmpath.training import batches

    cfg = recipe.train
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    rows = read_split(data, "train")
    model, tokenizer = load_causal(resolve_model(recipe.model.base).path)
    lora = recipe.lora
    model = with_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules, quantized=False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    order = batches(
        rows, cfg.batch_size, random.Random(cfg.seed), cfg.group_by_length, lambda r: len(r["input_ids"])
    )
    tokens = 0
    started = time.perf_counter()
    for batch in order[: cfg.max_steps]:
        enc = pad_batch([as_rendered(r) for r in batch], tokenizer.pad_token_id)
        loss = model(**enc).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(enc["attention_mask"].sum())
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def stage(recipe, data) -> dict:
    """The pipeline's finetune stage function itself, with its MLflow logging and checkpoints."""
    import mlflow

    from tasks.runs import pipeline_run
    from tasks.train import train

    with pipeline_run(recipe) as run:
        trained = train(recipe, data, run.run_id)
        run.summary = {}
    metrics = mlflow.MlflowClient().get_run(run.run_id).data.metrics
    return {
        "tokens": metrics["train_tokens_per_second"] * trained.seconds,
        "seconds": trained.seconds,
        "tokens_per_second": metrics["train_tokens_per_second"],
    }


def worker(spec: dict) -> dict:
    from llmpath.recipes import load_recipe
    from llmpath.results import PreparedData

    recipe = load_recipe(spec["recipe"], spec["overrides"])
    data = PreparedData.model_validate(spec["data"])
    return (bare if spec["side"] == "bare" else stage)(recipe, data)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=str(HERE.parent / "recipes" / "chat-alpaca-smoke.yaml"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0

    home = Path(tempfile.mkdtemp(prefix="llmpath-bench-train-"))
    atexit.register(shutil.rmtree, home, True)  # the throwaway store holds a model per round
    os.environ["LLMPATH_HOME"] = str(home)  # a throwaway MLflow store, shared by the workers
    from llmpath import settings
    from llmpath.recipes import load_recipe
    from tasks.data import prepare
    from tasks.runs import pipeline_run

    settings.apply_defaults()
    overrides = [f"train.max_steps={args.steps}", f"train.checkpoint_every={max(args.steps // 2, 1)}"]
    recipe = load_recipe(args.recipe, overrides)
    with pipeline_run(recipe) as run:
        data = prepare(recipe, run.run_id)
        run.summary = {}
    spec = {"recipe": args.recipe, "overrides": overrides, "data": data.model_dump()}
    results: dict[str, list[dict]] = {"bare": [], "stage": []}
    for round_ in range(args.rounds):
        for side in ("bare", "stage") if round_ % 2 == 0 else ("stage", "bare"):
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                json.dump(spec | {"side": side}, fh)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", fh.name], capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                raise RuntimeError(f"{side} failed:\n{out.stderr[-3000:]}")
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"round {round_ + 1} {side}: {results[side][-1]['tokens_per_second']:.1f} tokens/s",
                flush=True,
            )
    bare_tps = statistics.median(r["tokens_per_second"] for r in results["bare"])
    stage_tps = statistics.median(r["tokens_per_second"] for r in results["stage"])
    ratio = stage_tps / bare_tps
    markdown = (
        f"Recipe {Path(args.recipe).name}: {args.steps} LoRA steps of batch {recipe.train.batch_size} "
        f"(max_length {recipe.model.max_length}), checkpoint every {max(args.steps // 2, 1)} steps, "
        f"{args.rounds} rounds, medians.\n\n"
        "| loop | training tokens/s | vs bare |\n|---|---|---|\n"
        f"| bare peft loop | {bare_tps:.1f} | 1.00 |\n"
        f"| pipeline finetune stage | {stage_tps:.1f} | {ratio:.2f} |\n\n"
        f"Target: at least 0.95 of the bare loop: {'met' if ratio >= 0.95 else 'NOT met'}.\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.md").write_text(markdown)
    (out / "train_throughput.json").write_text(json.dumps(results | {"ratio": ratio}, indent=2))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
