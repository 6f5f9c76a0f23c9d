"""Sequence classifiers: the merged model to ONNX fp32 and dynamic int8, and the parity gate that picks the form
that ships (int8 within tolerance of PyTorch, else fp32, else nothing)."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np

from bentos.classifier.runtime import QUANTIZATION_FILE, OnnxTextClassifier, cpu_name, int8_profile
from llmpath import progress, tracking
from llmpath.metrics.classification import agreement, classification_metrics
from llmpath.results import Evaluation, ExportedModel, ParityError, ParityResult, PreparedData, TrainedModel
from llmpath.splits import read_split

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def export_onnx(model_dir: Path, out: Path) -> Path:
    """Merged PyTorch checkpoint -> ONNX (optimum), with tokenizer and config alongside."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def quantize_int8(onnx_dir: Path, out: Path, cfg) -> dict[str, str]:
    """Dynamic int8, MatMul only, in the configuration for the CPU family `cfg.int8_for` names (auto: this host's;
    see `int8_profile`). Writes what it chose and why beside the model (quantization.json) and returns it."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if cfg.int8_for == "auto":
        profile, reason = int8_profile()
        reason = f"chosen for this host: {reason}"
    else:
        profile, reason = cfg.int8_for, f"named by the recipe (export.int8_for: {cfg.int8_for})"
    qconfig = getattr(AutoQuantizationConfig, profile)(
        is_static=False, per_channel=cfg.per_channel, operators_to_quantize=["MatMul"]
    )
    ORTQuantizer.from_pretrained(onnx_dir).quantize(save_dir=out, quantization_config=qconfig)
    for name in _TOKENIZER_FILES:
        if (onnx_dir / name).exists() and not (out / name).exists():
            shutil.copy2(onnx_dir / name, out / name)
    info = {
        "profile": profile,
        "reason": reason,
        "weights": qconfig.weights_dtype.name,
        "activations": qconfig.activations_dtype.name,
        "per_channel": str(cfg.per_channel).lower(),
        "host": f"{platform.machine()}: {cpu_name()}",
    }
    (out / QUANTIZATION_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def export_version(recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
    """Export the merged model to ONNX fp32 (+ int8) as artifacts of this run."""
    import mlflow

    model_dir = tracking.download_model(trained.model_uri)
    out = tracking.scratch("onnx-")
    export_onnx(model_dir, out / "fp32")
    quantized = quantize_int8(out / "fp32", out / "int8", recipe.export) if recipe.export.quantize else None
    with tracking.use_run(run_id):
        if quantized:
            mlflow.set_tags({f"export.int8_{k}": v for k, v in quantized.items()})
            print(
                f"export: int8 {quantized['weights']} weights ({quantized['profile']}): {quantized['reason']}"
            )
        mlflow.log_artifacts(str(out), "onnx")
        sizes = {f"onnx.{p.parent.name}_mb": p.stat().st_size / 2**20 for p in out.glob("*/*.onnx")}
        mlflow.log_metrics(sizes)
    return ExportedModel(
        run_id=run_id,
        fp32_uri=tracking.artifact_uri(run_id, "onnx/fp32"),
        int8_uri=tracking.artifact_uri(run_id, "onnx/int8") if recipe.export.quantize else None,
    )


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
