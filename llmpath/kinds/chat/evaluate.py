"""chat evaluation: assistant-token loss and perplexity on the whole validation split, greedy answers on its
first prompts scored with ROUGE-L, answers logged as an MLflow table; base and candidate side by side."""

from __future__ import annotations

import json
from pathlib import Path

from llmpath import progress, tracking
from llmpath.causal import assistant_loss, greedy, load_causal
from llmpath.chat import prompt_ids
from llmpath.metrics.generation import perplexity, rouge_l
from llmpath.results import Evaluation, PreparedData
from llmpath.splits import read_split


def eval_prompts(rows: list[dict], limit: int) -> list[tuple[list[dict], str]]:
    """(conversation before the last answer, that answer) for the first `limit` untruncated rows."""
    out = []
    for row in rows:
        messages = json.loads(row["messages"])
        if row["truncated"] or messages[-1]["role"] != "assistant":
            continue
        out.append((messages[:-1], messages[-1]["content"]))
        if len(out) == limit:
            break
    return out


def score_chat(recipe, data: PreparedData, run_id: str, name: str, model_dir: Path) -> Evaluation:
    """Loss and perplexity on the validation split; greedy answers on its first prompts, with ROUGE-L (or,
    for `eval.metric: call_accuracy`, the first call of its conversations that have one: calls.py)."""
    import torch

    rows = read_split(data, "validation")
    model, tokenizer = load_causal(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    loss, tokens = assistant_loss(model, rows, tokenizer.pad_token_id, recipe.eval.batch_size)
    if recipe.eval.metric == "call_accuracy":  # tool calling: the held-out calls, not ROUGE-L
        from llmpath.kinds.chat.calls import answer_calls, call_metrics

        answers = answer_calls(
            model, tokenizer, rows, recipe.eval.max_prompts, recipe.eval.max_new_tokens, name
        )
        metrics = {"loss": loss, "perplexity": perplexity(loss)} | call_metrics(answers)
        return _log(answers, metrics | {"stopped_share": _share(answers, "stopped")}, tokens, run_id, name)
    stop = [tokenizer.eos_token_id]
    answers = []
    prompts = eval_prompts(rows, recipe.eval.max_prompts)
    for messages, reference in progress.track(prompts, desc=f"answer ({name})", unit="prompts"):
        ids = prompt_ids(tokenizer, messages)
        new = greedy(model, ids, recipe.eval.max_new_tokens, stop)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        answers.append(
            {
                "prompt": messages[-1]["content"],
                "reference": reference,
                "answer": text,
                "rouge_l": rouge_l(text, reference),
                "stopped": bool(new and new[-1] in stop),
                "prompt_ids": ids,
                "answer_ids": new,
            }
        )
    metrics = {
        "loss": loss,
        "perplexity": perplexity(loss),
        "rouge_l": sum(a["rouge_l"] for a in answers) / max(len(answers), 1),
        "stopped_share": _share(answers, "stopped"),
    }
    return _log(answers, metrics, tokens, run_id, name)


def _share(answers: list[dict], key: str) -> float:
    return sum(a[key] for a in answers) / max(len(answers), 1)


def _log(answers: list[dict], metrics: dict, tokens: int, run_id: str, name: str) -> Evaluation:
    """Answers and metrics to the run (files, metrics, an answers table); the Evaluation the gate reads."""
    import mlflow

    folder = tracking.scratch("eval-")
    (folder / "answers.json").write_text(json.dumps(answers, ensure_ascii=False))
    (folder / "metrics.json").write_text(json.dumps(metrics | {"assistant_tokens": tokens}, indent=2))
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        table = {k: [a[k] for a in answers] for k in ("prompt", "reference", "answer", "rouge_l")}
        mlflow.log_table(table, artifact_file=f"eval/{name}_answers.json")
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return Evaluation(
        name=name, metrics=metrics, predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/answers.json")
    )


def log_comparison(base: Evaluation, candidate: Evaluation, run_id: str) -> None:
    """One MLflow table with base and candidate answers side by side, prompt by prompt (for the gate)."""
    import mlflow

    before = json.loads(tracking.download(base.predictions_uri).read_text())
    after = json.loads(tracking.download(candidate.predictions_uri).read_text())
    rows = list(zip(before, after, strict=False))
    table = {
        "prompt": [a["prompt"] for a, _ in rows],
        "reference": [a["reference"] for a, _ in rows],
        "base_answer": [a["answer"] for a, _ in rows],
        "candidate_answer": [b["answer"] for _, b in rows],
        "base_rouge_l": [a["rouge_l"] for a, _ in rows],
        "candidate_rouge_l": [b["rouge_l"] for _, b in rows],
    }
    with tracking.use_run(run_id):
        mlflow.log_table(table, artifact_file="eval/base_vs_candidate.json")
