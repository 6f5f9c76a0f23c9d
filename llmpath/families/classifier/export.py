"""Sequence classifiers: the merged model to ONNX fp32 and dynamic int8, and the parity gate that picks the form
that ships (int8 within tolerance of PyTorch, else fp32, else nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bentos.classifier.runtime import OnnxTextClassifier
from llmpath import progress, tracking
from llmpath.encoder_onnx import export_forms
from llmpath.metrics.classification import agreement, classification_metrics
from llmpath.results import Evaluation, ExportedModel, ParityError, ParityResult, PreparedData, TrainedModel
from llmpath.splits import read_split


def export_onnx(model_dir: Path, out: Path) -> Path:
    """Merged PyTorch checkpoint -> ONNX (optimum), with tokenizer and config alongside."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def export_version(recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
    """Export the merged model to ONNX fp32 (+ int8) as artifacts of this run."""
    return export_forms(recipe, trained, run_id, export_onnx)


def choose_form(fp32: dict[str, float], int8: dict[str, float] | None, cfg) -> tuple[str, str]:
    """int8 when within tolerance of PyTorch, else fp32 when it agrees, else nothing ships."""
    if int8 is not None:
        if int8["accuracy_drop"] <= cfg.max_accuracy_drop and int8["agreement"] >= cfg.min_agreement:
            return "int8", (
                f"int8 within tolerance: accuracy drop {int8['accuracy_drop']:.4f} <= {cfg.max_accuracy_drop}, "
                f"agreement {int8['agreement']:.4f} >= {cfg.min_agreement}"
            )
        why = f"int8 outside tolerance (drop {int8['accuracy_drop']:.4f}, agreement {int8['agreement']:.4f})"
    else:
        why = "quantization disabled"
    if fp32["accuracy_drop"] <= cfg.max_accuracy_drop and fp32["agreement"] >= cfg.min_agreement:
        return "fp32", f"{why}; ONNX fp32 ships (agreement {fp32['agreement']:.4f})"
    raise ParityError(f"{why}; ONNX fp32 also disagrees with PyTorch: {fp32}")


def predict_tracked(clf: OnnxTextClassifier, texts: list[str], batch_size: int, form: str) -> np.ndarray:
    """`clf.predict_proba_batched(texts, batch_size)`, batch by batch with a tqdm bar and progress updates."""
    starts = range(0, len(texts), batch_size)
    parts = [
        clf.predict_proba(texts[i : i + batch_size])
        for i in progress.track(starts, f"parity {form}", "batches")
    ]
    return np.concatenate(parts) if parts else np.zeros((0, len(clf.labels)))


def check_parity(
    recipe, data: PreparedData, exported: ExportedModel, candidate: Evaluation, run_id: str
) -> ParityResult:
    """Score every exported form on validation against the PyTorch predictions; mark one deployable."""
    import mlflow

    rows = read_split(data, "validation")
    texts = [r["text"] for r in rows]
    reference = json.loads(tracking.download(candidate.predictions_uri).read_text())
    y_true, y_torch = reference["y_true"], reference["y_pred"]
    forms = {"fp32": exported.fp32_uri} | ({"int8": exported.int8_uri} if exported.int8_uri else {})
    scores: dict[str, dict[str, float]] = {}
    for index, (form, uri) in enumerate(forms.items()):
        clf = OnnxTextClassifier(tracking.download(uri), recipe.model.max_length)
        with progress.part(index, len(forms), form):
            y_pred = predict_tracked(clf, texts, recipe.eval.batch_size, form).argmax(axis=-1).tolist()
        accuracy = classification_metrics(y_true, y_pred, recipe.data.labels)["accuracy"]
        scores[form] = {
            "accuracy": accuracy,
            "accuracy_drop": candidate.metrics["accuracy"] - accuracy,
            "agreement": agreement(y_torch, y_pred),
        }
    flat = {f"parity.{form}.{k}": v for form, s in scores.items() for k, v in s.items()}
    with tracking.use_run(run_id):
        mlflow.log_metrics(flat)
        form, reason = choose_form(scores["fp32"], scores.get("int8"), recipe.export)
        mlflow.set_tags({"deployable.form": form, "deployable.reason": reason})
    print(f"parity: {form} is deployable: {reason}")
    return ParityResult(deployable_form=form, deployable_uri=forms[form], metrics=flat, reason=reason)
