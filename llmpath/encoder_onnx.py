"""Encoder models (a classifier, a span reader) as ONNX forms: fp32 exported by the family's optimum class and a
dynamic int8 form chosen for the host's CPU, logged as artifacts of the run. The families differ in the export
class and the files beside the model, and in how parity is scored; the rest is here."""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from bentos.classifier.runtime import QUANTIZATION_FILE, cpu_name, int8_profile
from llmpath import tracking
from llmpath.results import ExportedModel, TrainedModel

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def quantize_int8(onnx_dir: Path, out: Path, cfg, files: Sequence[str] = TOKENIZER_FILES) -> dict[str, str]:
    """Dynamic int8, MatMul only, in the configuration for the CPU family `cfg.int8_for` names (auto: this host's;
    see `int8_profile`), with `files` copied beside it. Writes what it chose and why (quantization.json) and
    returns it."""
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
    for name in files:
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


def export_forms(
    recipe,
    trained: TrainedModel,
    run_id: str,
    export_fp32: Callable[[Path, Path], object],
    files: Sequence[str] = TOKENIZER_FILES,
) -> ExportedModel:
    """The merged model to ONNX fp32 (`export_fp32(model_dir, out)`) and, when `recipe.export.quantize`, int8,
    logged under `onnx/` of the run with their sizes and the int8 configuration's reason."""
    import mlflow

    model_dir = tracking.download_model(trained.model_uri)
    out = tracking.scratch("onnx-")
    export_fp32(model_dir, out / "fp32")
    quantized = (
        quantize_int8(out / "fp32", out / "int8", recipe.export, files) if recipe.export.quantize else None
    )
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
