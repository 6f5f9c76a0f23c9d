"""Span models: the merged PyTorch model to ONNX fp32 and dynamic int8, and the parity gate that picks the form
that ships: int8 when its answers stay within tolerance of PyTorch's (F1 and same-span agreement on the
validation questions), else fp32, else nothing."""

from __future__ import annotations

import json
from pathlib import Path

from bentos.qa.runtime import OnnxReader
from llmpath import progress, tracking
from llmpath.encoder_onnx import TOKENIZER_FILES, export_forms
from llmpath.families.span.reader import READER_FILE, predict_onnx, span_agreement
from llmpath.families.span.squad import squad_scores
from llmpath.results import Evaluation, ExportedModel, ParityError, ParityResult, PreparedData, TrainedModel
from llmpath.splits import read_split

_FILES = (*TOKENIZER_FILES, READER_FILE)  # the token window travels with each form


def export_onnx(model_dir: Path, out: Path, max_length: int) -> Path:
    """Merged PyTorch span model -> ONNX (optimum: inputs -> start_logits, end_logits), tokenizer, config and
    the token window beside it."""
    from optimum.onnxruntime import ORTModelForQuestionAnswering
    from transformers import AutoTokenizer

    ORTModelForQuestionAnswering.from_pretrained(model_dir, export=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    (out / READER_FILE).write_text(json.dumps({"max_length": max_length}) + "\n")
    return out


def export_version(recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
    """Export the merged span model to ONNX fp32 (+ int8) as artifacts of this run."""
    return export_forms(
        recipe, trained, run_id, lambda src, out: export_onnx(src, out, recipe.model.max_length), _FILES
    )


def choose_form(fp32: dict[str, float], int8: dict[str, float] | None, cfg) -> tuple[str, str]:
    """int8 when within tolerance of PyTorch, else fp32 when it agrees, else nothing ships."""
    if int8 is not None:
        if int8["f1_drop"] <= cfg.max_f1_drop and int8["agreement"] >= cfg.min_agreement:
            return "int8", (
                f"int8 within tolerance: F1 drop {int8['f1_drop']:.4f} <= {cfg.max_f1_drop}, "
                f"span agreement {int8['agreement']:.4f} >= {cfg.min_agreement}"
            )
        why = (
            f"int8 outside tolerance (F1 drop {int8['f1_drop']:.4f}, span agreement {int8['agreement']:.4f})"
        )
    else:
        why = "quantization disabled"
    if fp32["f1_drop"] <= cfg.max_f1_drop and fp32["agreement"] >= cfg.min_agreement:
        return "fp32", f"{why}; ONNX fp32 ships (span agreement {fp32['agreement']:.4f})"
    raise ParityError(f"{why}; ONNX fp32 also disagrees with PyTorch: {fp32}")


def check_parity(
    recipe, data: PreparedData, exported: ExportedModel, candidate: Evaluation, run_id: str
) -> ParityResult:
    """Answer every validation question with each exported form; compare spans and F1 with PyTorch's."""
    import mlflow

    rows = read_split(data, "validation")
    reference = json.loads(tracking.download(candidate.predictions_uri).read_text())["predictions"]
    forms = {"fp32": exported.fp32_uri} | ({"int8": exported.int8_uri} if exported.int8_uri else {})
    refs = [list(r["answers"]) for r in rows]
    scores: dict[str, dict[str, float]] = {}
    for index, (form, uri) in enumerate(forms.items()):
        reader = OnnxReader(
            tracking.download(uri),
            max_length=recipe.model.max_length,
            stride=recipe.serve.stride,
            max_answer_tokens=recipe.serve.max_answer_tokens,
        )
        with progress.part(index, len(forms), form):
            got = predict_onnx(reader, rows, lambda r, f=form: progress.track(r, f"parity {f}", "questions"))
        quality = squad_scores([g["answer"] for g in got], refs)
        scores[form] = {
            "exact_match": quality["exact_match"],
            "f1": quality["f1"],
            "f1_drop": candidate.metrics["f1"] - quality["f1"],
            "agreement": span_agreement(reference, got),
        }
    flat = {f"parity.{form}.{k}": v for form, s in scores.items() for k, v in s.items()}
    with tracking.use_run(run_id):
        mlflow.log_metrics(flat)
        form, reason = choose_form(scores["fp32"], scores.get("int8"), recipe.export)
        mlflow.set_tags({"deployable.form": form, "deployable.reason": reason})
    print(f"parity: {form} is deployable: {reason}")
    return ParityResult(deployable_form=form, deployable_uri=forms[form], metrics=flat, reason=reason)
