"""dpo evaluation on the held-out pairs: each answer's summed log-probability given its prompt (base and
candidate alike), hence preference accuracy (the gate) and, with the base as the reference, DPO's implicit
reward margin; then the chat metrics: greedy answers to the first held-out prompts, ROUGE-L against the chosen
answer, with `prompt_ids`/`answer_ids` per prompt for the causal-LM family's parity gate."""

from __future__ import annotations

import json
from pathlib import Path

from llmpath import progress, tracking
from llmpath.causal import greedy, load_causal
from llmpath.kinds.dpo.metrics import preference_metrics
from llmpath.metrics.generation import rouge_l
from llmpath.results import Evaluation, PreparedData
from llmpath.splits import read_split


def sequence_logps(model, rows: list[dict], pad_id: int, batch_size: int) -> tuple[list[float], list[float]]:
    """Summed log-probability of each pair's chosen and of its rejected answer (its tokens only) given the
    prompt, in nats."""
    import torch

    device = next(model.parameters()).device
    chosen, rejected = [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            seqs = [(r["prompt_ids"], r[k]) for k in ("chosen_ids", "rejected_ids") for r in batch]
            width = max(len(p) + len(a) for p, a in seqs)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            answer = torch.zeros_like(ids, dtype=torch.bool)
            for i, (p, a) in enumerate(seqs):
                n = len(p) + len(a)
                ids[i, :n] = torch.tensor([int(x) for x in list(p) + list(a)])
                mask[i, :n] = 1
                answer[i, len(p) : n] = True
            ids, mask, answer = ids.to(device), mask.to(device), answer.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            token_logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            sums = (token_logps * answer[:, 1:]).sum(-1).tolist()
            chosen += sums[: len(batch)]
            rejected += sums[len(batch) :]
    return chosen, rejected


def _scores(model_dir: Path, rows: list[dict], batch_size: int):
    import torch

    model, tokenizer = load_causal(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return model, tokenizer, sequence_logps(model, rows, tokenizer.pad_token_id, batch_size)


def score_dpo(recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool) -> Evaluation:
    """Preference metrics of one model on the held-out pairs (the candidate's reward metrics against the base);
    greedy answers to the first held-out prompts."""
    import mlflow

    rows = read_split(data, "validation")
    model, tokenizer, (chosen, rejected) = _scores(model_dir, rows, recipe.eval.batch_size)
    ref = (None, None)
    if not base:  # DPO's reference is the base: its log-probs give the implicit rewards
        from llmpath.kinds.dpo.data import resolve_base

        ref_model, _, ref = _scores(resolve_base(recipe).path, rows, recipe.eval.batch_size)
        del ref_model
    metrics = preference_metrics(chosen, rejected, recipe.dpo.beta, *ref)
    answers = _answers(model, tokenizer, rows, recipe, name)
    metrics |= {
        "rouge_l": sum(a["rouge_l"] for a in answers) / max(len(answers), 1),
        "stopped_share": sum(a["stopped"] for a in answers) / max(len(answers), 1),
    }
    pairs = [
        {"prompt": json.loads(r["prompt"])[-1]["content"], "chosen_logp": c, "rejected_logp": j}
        for r, c, j in zip(rows, chosen, rejected, strict=True)
    ]
    folder = tracking.scratch("eval-")
    (folder / "answers.json").write_text(json.dumps(answers, ensure_ascii=False))
    (folder / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False))
    (folder / "metrics.json").write_text(json.dumps(metrics | {"pairs": len(rows)}, indent=2))
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()} | {"eval.heldout_pairs": len(rows)})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        table = {k: [a[k] for a in answers] for k in ("prompt", "reference", "answer", "rouge_l")}
        mlflow.log_table(table, artifact_file=f"eval/{name}_answers.json")
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return Evaluation(
        name=name, metrics=metrics, predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/answers.json")
    )


def _answers(model, tokenizer, rows: list[dict], recipe, name: str) -> list[dict]:
    """Greedy answers to the first `eval.max_prompts` held-out prompts, scored against the chosen answer."""
    stop = [tokenizer.eos_token_id]
    prompts = [r for r in rows if not r["truncated"]][: recipe.eval.max_prompts] or rows[
        : recipe.eval.max_prompts
    ]
    out = []
    for row in progress.track(prompts, desc=f"answer ({name})", unit="prompts"):
        ids = [int(x) for x in row["prompt_ids"]]
        new = greedy(model, ids, recipe.eval.max_new_tokens, stop)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        out.append(
            {
                "prompt": json.loads(row["prompt"])[-1]["content"],
                "reference": row["chosen"],
                "answer": text,
                "rouge_l": rouge_l(text, row["chosen"]),
                "stopped": bool(new and new[-1] in stop),
                "prompt_ids": ids,
                "answer_ids": new,
            }
        )
    return out


def _pairs(evaluation: Evaluation) -> list[dict]:
    """The per-pair log-probabilities written beside an evaluation's answers (eval/<name>/pairs.json)."""
    folder = evaluation.predictions_uri.rsplit("/", 1)[0]
    return json.loads((tracking.download(folder) / "pairs.json").read_text())


def log_comparison(base: Evaluation, candidate: Evaluation, run_id: str) -> None:
    """One MLflow table, pair by pair: base and candidate log-probabilities of the chosen and rejected answers."""
    import mlflow

    before, after = (_pairs(e) for e in (base, candidate))
    rows = list(zip(before, after, strict=False))
    table = {
        "prompt": [a["prompt"] for a, _ in rows],
        "base_chosen_logp": [a["chosen_logp"] for a, _ in rows],
        "base_rejected_logp": [a["rejected_logp"] for a, _ in rows],
        "candidate_chosen_logp": [b["chosen_logp"] for _, b in rows],
        "candidate_rejected_logp": [b["rejected_logp"] for _, b in rows],
        "base_prefers_chosen": [a["chosen_logp"] > a["rejected_logp"] for a, _ in rows],
        "candidate_prefers_chosen": [b["chosen_logp"] > b["rejected_logp"] for _, b in rows],
    }
    with tracking.use_run(run_id):
        mlflow.log_table(table, artifact_file="eval/base_vs_candidate.json")
