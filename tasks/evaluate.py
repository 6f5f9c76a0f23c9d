"""Stages `evaluate_base` and `evaluate_candidate`: accuracy, macro-F1 and a confusion matrix on validation."""

from __future__ import annotations

import json
from pathlib import Path

from llmpath import tracking
from llmpath.classifier import argmax, load_for_classification, predict
from llmpath.config import Recipe
from llmpath.metrics import classification_metrics, confusion_matrix, plot_confusion
from llmpath.sources import resolve_model
from tasks.results import Evaluation, PreparedData, TrainedModel
from tasks.stages import stage
from tasks.train import read_split


def score(
    recipe: Recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, seed: int | None
) -> Evaluation:
    """Predict the validation split with one model and log metrics, predictions and the confusion matrix."""
    import mlflow

    rows = read_split(data, "validation")
    model, tokenizer = load_for_classification(model_dir, recipe.data.labels, seed=seed)
    probs = predict(
        model, tokenizer, [r["text"] for r in rows], recipe.model.max_length, recipe.eval.batch_size
    )
    y_true, y_pred = [int(r["label"]) for r in rows], argmax(probs)
    metrics = classification_metrics(y_true, y_pred, recipe.data.labels)
    matrix = confusion_matrix(y_true, y_pred, len(recipe.data.labels))
    folder = tracking.scratch("eval-")
    (folder / "predictions.json").write_text(json.dumps({"y_true": y_true, "y_pred": y_pred}))
    (folder / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "confusion_matrix": matrix}, indent=2)
    )
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        fig = plot_confusion(matrix, recipe.data.labels, f"{name}: accuracy {metrics['accuracy']:.3f}")
        tracking.log_figure(fig, f"eval/{name}/confusion_matrix.png")
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return Evaluation(
        name=name,
        metrics=metrics,
        predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/predictions.json"),
    )


def score_base(recipe: Recipe, data: PreparedData, run_id: str) -> Evaluation:
    """The base model with the same seeded head that training starts from (chat: the base LM as it is)."""
    base = resolve_model(recipe.model.base, recipe.model.revision)
    if recipe.kind == "chat":
        from tasks.chat import score_chat

        return score_chat(recipe, data, run_id, "base", base.path)
    return score(recipe, data, run_id, "base", base.path, seed=recipe.train.seed)


def score_candidate(recipe: Recipe, data: PreparedData, trained: TrainedModel, run_id: str) -> Evaluation:
    """The merged fine-tuned model."""
    if recipe.kind == "chat":
        from tasks.chat import score_chat

        return score_chat(recipe, data, run_id, "candidate", tracking.download_model(trained.model_uri))
    return score(recipe, data, run_id, "candidate", tracking.download_model(trained.model_uri), seed=None)


def _common_key(recipe: Recipe, data: PreparedData) -> dict:
    chat = {"prompts": recipe.eval.max_prompts, "max_new_tokens": recipe.eval.max_new_tokens}
    return {
        "kind": recipe.kind,
        "chat": chat if recipe.kind == "chat" else None,
        "data": data.fingerprint,
        "labels": recipe.data.labels,
        "max_length": recipe.model.max_length,
        "batch_size": recipe.eval.batch_size,  # padding per batch; the gate settings do not change scores
    }


def base_key(recipe: Recipe, data: PreparedData, **_) -> dict:
    return _common_key(recipe, data) | {"base": data.base_revision, "head_seed": recipe.train.seed}


def candidate_key(recipe: Recipe, data: PreparedData, trained: TrainedModel, **_) -> dict:
    return _common_key(recipe, data) | {"model": trained.model_uri}


evaluate_base = stage(
    score_base,
    name="evaluate_base",
    key=base_key,
    code=("llmpath.classifier", "llmpath.metrics", "llmpath.causal", "tasks.chat"),
)
evaluate_candidate = stage(
    score_candidate,
    name="evaluate_candidate",
    key=candidate_key,
    code=("llmpath.classifier", "llmpath.metrics", "llmpath.causal", "tasks.chat"),
)
