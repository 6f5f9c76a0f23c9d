"""classify evaluation: accuracy, macro-F1 and a confusion matrix on the validation split."""

from __future__ import annotations

import json
from pathlib import Path

from llmpath import tracking
from llmpath.classifier import argmax, load_for_classification, predict
from llmpath.metrics.classification import classification_metrics, confusion_matrix, plot_confusion
from llmpath.results import Evaluation, PreparedData
from llmpath.splits import read_split


def score(
    recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, seed: int | None
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
