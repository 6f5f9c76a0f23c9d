"""pretrain evaluation: perplexity on the held-out blocks (base: the random init; candidate: the trained model)
beside a unigram baseline on the same tokens, and greedy samples from fixed prompts as an MLflow table. The
samples' token ids are what the causal-LM parity gate replays through each ONNX form."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from llmpath import progress, tracking
from llmpath.causal import greedy, load_causal
from llmpath.kinds.pretrain.data import unigram_perplexity
from llmpath.kinds.pretrain.objective import pad_blocks
from llmpath.results import Evaluation, PreparedData
from llmpath.splits import read_split


def heldout_loss(model, rows: list[dict], pad_id: int, batch_size: int) -> tuple[float, int]:
    """Mean next-token cross-entropy over the held-out blocks (each predicted token weighs the same)."""
    import torch

    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            enc = {k: v.to(device) for k, v in pad_blocks(rows[start : start + batch_size], pad_id).items()}
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            targets = enc["labels"][:, 1:]
            keep = targets != -100
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1][keep].float(), targets[keep], reduction="sum"
            )
            total += loss.item()
            tokens += int(keep.sum())
    return (total / tokens if tokens else math.nan), tokens


def unigram_baseline(train: list[dict], heldout: list[dict], vocab_size: int) -> float:
    """Add-one smoothed training-split token frequencies, on the tokens the model predicts (each block's
    tokens after its first)."""
    counts = Counter(int(t) for r in train for t in r["input_ids"])
    targets = [int(t) for r in heldout for t in list(r["input_ids"])[1:]]
    return unigram_perplexity(counts, vocab_size, targets)


def score_pretrain(recipe, data: PreparedData, run_id: str, name: str, model_dir: Path) -> Evaluation:
    import mlflow
    import torch

    rows = read_split(data, "validation")
    model, tokenizer = load_causal(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    loss, tokens = heldout_loss(model, rows, tokenizer.pad_token_id, recipe.eval.batch_size)
    unigram = unigram_baseline(read_split(data, "train"), rows, len(tokenizer))
    stop = [tokenizer.eos_token_id]
    samples = []
    for prompt in progress.track(recipe.eval.prompts, desc=f"samples ({name})", unit="prompts"):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        new = greedy(model, ids, recipe.eval.max_new_tokens, stop)
        text = tokenizer.decode(new, skip_special_tokens=True)
        samples.append({"prompt": prompt, "answer": text, "prompt_ids": ids, "answer_ids": new})
    ppl = math.exp(loss)
    metrics = {
        "loss": loss,
        "perplexity": ppl,
        "neg_perplexity": -ppl,
        "unigram_perplexity": unigram,
        "heldout_tokens": float(tokens),
    }
    folder = tracking.scratch("eval-")
    (folder / "answers.json").write_text(json.dumps(samples, ensure_ascii=False))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "samples.txt").write_text(
        "\n\n".join(f"### {s['prompt']!r}\n{s['prompt']}{s['answer']}" for s in samples) + "\n"
    )
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()} | {"unigram.perplexity": unigram})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        table = {k: [s[k] for s in samples] for k in ("prompt", "answer")}
        mlflow.log_table(table, artifact_file=f"eval/{name}_samples.json")
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return Evaluation(
        name=name, metrics=metrics, predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/answers.json")
    )
