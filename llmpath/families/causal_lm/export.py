"""Causal LMs: the merged model to ONNX fp32 with KV cache plus each quantized form the recipe lists, and the
parity gate: every form against PyTorch's greedy tokens (teacher-forced top-1 agreement and identical
answers) and its decoding speed; the recipe's floor decides which forms may ship, its preference which does."""

from __future__ import annotations

import json
import time
from pathlib import Path

from llmpath import progress, tracking
from llmpath.causal import export_causal_onnx, quantize_form
from llmpath.results import Evaluation, ExportedModel, ParityError, ParityResult, TrainedModel


def export_causal(recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
    import mlflow

    model_dir = tracking.download_model(trained.model_uri)
    out = tracking.scratch("onnx-")
    started = time.perf_counter()
    export_causal_onnx(model_dir, out / "fp32")
    print(f"export: ONNX fp32 with KV cache in {time.perf_counter() - started:.0f} s")
    forms = recipe.export.quantized_forms if recipe.export.quantize else []
    for form in forms:
        quantize_form(form, out / "fp32", out / form, recipe.export.block_size)
    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "onnx")
        mlflow.log_metrics(
            {f"onnx.{p.parent.name}_mb": p.stat().st_size / 2**20 for p in out.glob("*/*.onnx")}
        )
    return ExportedModel(
        run_id=run_id,
        fp32_uri=tracking.artifact_uri(run_id, "onnx/fp32"),
        int8_uri=None,
        quantized={form: tracking.artifact_uri(run_id, f"onnx/{form}") for form in forms},
    )


def measure_form(folder: Path, probes: list[dict], stop: list[int], form: str = "") -> dict[str, float]:
    """One ONNX form on the probe set: teacher-forced top-1 agreement with PyTorch's greedy tokens, share of
    identical greedy answers, decoding tokens/s and time to first token."""
    import numpy as np

    from bentos.chat.runtime import OnnxCausalLM

    llm = OnnxCausalLM(folder)
    agree = total = identical = generated = 0
    decode_seconds, first_token = 0.0, []
    for probe in progress.track(probes, f"parity {form}".strip(), "probes"):
        prompt, reference = probe["prompt_ids"], probe["answer_ids"]
        if reference:
            logits = llm.logits(prompt + reference[:-1])[len(prompt) - 1 :]
            agree += int((np.argmax(logits, axis=-1) == np.asarray(reference)).sum())
            total += len(reference)
        expected = reference[:-1] if reference and reference[-1] in stop else reference
        tokens, started = [], time.perf_counter()
        for token in llm.stream(prompt, max(len(reference), 1), stop):
            if not tokens:
                first_token.append(time.perf_counter() - started)
            tokens.append(token)
        decode_seconds += time.perf_counter() - started
        generated += len(tokens)
        identical += tokens == expected
    return {
        "top1_agreement": agree / total if total else 1.0,
        "identical": identical / len(probes),
        "tokens_per_second": generated / max(decode_seconds, 1e-9),
        "ttft_ms": 1000 * sum(first_token) / max(len(first_token), 1),
        "size_mb": sum(p.stat().st_size for p in folder.glob("*.onnx*")) / 2**20,
    }


def choose_chat_form(scores: dict[str, dict[str, float]], floor: float, prefer: str) -> tuple[str, str]:
    """fp32 must match PyTorch; a quantized form may ship only at or above the agreement floor; among the forms
    that may ship, the fastest (or smallest) does. Raises ParityError when not even fp32 matches."""
    fp32 = scores["fp32"]
    if fp32["top1_agreement"] < floor:
        raise ParityError(
            f"ONNX fp32 disagrees with PyTorch (top-1 agreement {fp32['top1_agreement']:.4f} < {floor}): "
            "the export is wrong, nothing ships"
        )
    passing = {f: s for f, s in scores.items() if s["top1_agreement"] >= floor}
    failed = [f"{f} ({s['top1_agreement']:.3f})" for f, s in scores.items() if f not in passing]
    if prefer == "size":
        form = min(passing, key=lambda f: passing[f]["size_mb"])
        why = f"smallest form at or above the floor ({passing[form]['size_mb']:.0f} MB)"
    else:
        form = max(passing, key=lambda f: passing[f]["tokens_per_second"])
        why = f"fastest form at or above the floor ({passing[form]['tokens_per_second']:.1f} tok/s)"
    figures = "; ".join(
        f"{f}: agreement {s['top1_agreement']:.3f}, {s['tokens_per_second']:.1f} tok/s, {s['size_mb']:.0f} MB"
        for f, s in scores.items()
    )
    below = f"; below the floor {floor}: {', '.join(failed)}" if failed else ""
    return form, f"{form} ships: {why}{below}. Measured: {figures}"


def parity_causal(recipe, exported: ExportedModel, candidate: Evaluation, run_id: str) -> ParityResult:
    import mlflow

    from llmpath.metrics.generation import plot_forms

    answers = json.loads(tracking.download(candidate.predictions_uri).read_text())
    probes = answers[: recipe.export.probe_prompts]
    if not probes:
        raise ValueError("parity: the candidate evaluation answered no prompts (raise eval.max_prompts)")
    fp32_dir = tracking.download(exported.fp32_uri)
    from transformers import AutoTokenizer

    stop = [AutoTokenizer.from_pretrained(fp32_dir).eos_token_id]  # as in evaluation and in the service
    forms = {"fp32": exported.fp32_uri} | exported.quantized
    scores = {}
    for index, (form, uri) in enumerate(forms.items()):
        with progress.part(index, len(forms), form):
            scores[form] = measure_form(tracking.download(uri), probes, stop, form)
    flat = {f"parity.{form}.{k}": v for form, s in scores.items() for k, v in s.items()}
    with tracking.use_run(run_id):
        mlflow.log_metrics(flat)
        mlflow.log_dict(scores, "parity/forms.json")
        tracking.log_figure(plot_forms(scores, recipe.export.min_agreement), "parity/forms.png")
        form, reason = choose_chat_form(scores, recipe.export.min_agreement, recipe.export.prefer)
        mlflow.set_tags({"deployable.form": form, "deployable.reason": reason})
    print(f"parity: {reason}")
    return ParityResult(deployable_form=form, deployable_uri=forms[form], metrics=flat, reason=reason)
