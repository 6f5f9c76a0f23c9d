"""qa evaluation: the model's best span for every held-out question, SQuAD v1.1 exact match and F1 (the
official normalization), and every answer beside its references in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from llmpath import progress, tracking
from llmpath.families.span.reader import predict_torch
from llmpath.families.span.squad import exact_match, squad_scores, token_f1
from llmpath.kinds.qa.objective import load_span_model
from llmpath.results import Evaluation, PreparedData
from llmpath.splits import read_split

SHOWN = 200  # rows of the answers table in MLflow


def score(
    recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, seed: int | None
) -> Evaluation:
    """Answer the validation questions with one model; log EM/F1, predictions and an answers table."""
    import mlflow

    rows = read_split(data, "validation")
    model, tokenizer = load_span_model(model_dir, seed=seed)
    got = predict_torch(
        model,
        tokenizer,
        rows,
        recipe.model.max_length,
        recipe.serve.stride,
        recipe.serve.max_answer_tokens,
        track=lambda r: progress.track(r, f"answering ({name})", "questions"),
    )
    refs = [list(r["answers"]) for r in rows]
    metrics = squad_scores([g["answer"] for g in got], refs) | {"questions": float(len(rows))}
    folder = tracking.scratch("eval-")
    (folder / "predictions.json").write_text(json.dumps({"predictions": got}))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = {
        "question": [r["question"] for r in rows[:SHOWN]],
        "answer": [g["answer"] for g in got[:SHOWN]],
        "references": [" | ".join(a) for a in refs[:SHOWN]],
        "em": [exact_match(g["answer"], a) for g, a in zip(got[:SHOWN], refs, strict=False)],
        "f1": [token_f1(g["answer"], a) for g, a in zip(got[:SHOWN], refs, strict=False)],
        "score": [g["score"] for g in got[:SHOWN]],
    }
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        mlflow.log_table(table, f"eval/{name}/answers.json")
    print(
        f"{name}: exact_match={metrics['exact_match']:.4f}, f1={metrics['f1']:.4f} on {len(rows)} questions"
    )
    return Evaluation(
        name=name,
        metrics=metrics,
        predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/predictions.json"),
    )
