"""The classifier's int8 configurations side by side on this CPU: u8/u8 (optimum's avx2 config) and u8/s8
(avx512_vnni), per channel and per tensor, against ONNX fp32: accuracy on SST-2 dev and the cost per text at
batch 1, 8 and 32, in one run. Says which configuration `export.int8_for: auto` picks here and why.

Usage: python bench/int8_configs.py [--model sst2-classifier] [--alias champion] [--repeats 3] [--out bench/results]
Needs LLMPATH_DATA_DIR (sst2/dev.tsv) and a classify model version with an ONNX fp32 form. Writes
bench/results/int8_configs.{json,md}; BENCHMARKS.md quotes the markdown.

All forms run in this one process with ONNX Runtime's default threads, one after another, each timed `--repeats`
times over the same 256 dev sentences (best of the repeats, so a busy moment costs one repeat, not the figure).
Batches run as the service runs them: sorted by length in groups of 8 (bentos/classifier/runtime.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bentos.classifier.runtime import OnnxTextClassifier, cpu_name, int8_profile  # noqa: E402

CONFIGS = {  # name -> (optimum AutoQuantizationConfig, per_channel)
    "u8/u8 per-channel (avx2)": ("avx2", True),
    "u8/u8 per-tensor (avx2)": ("avx2", False),
    "u8/s8 per-channel (avx512_vnni)": ("avx512_vnni", True),
    "u8/s8 per-tensor (avx512_vnni)": ("avx512_vnni", False),
}
BATCHES = (1, 8, 32)


def quantize(fp32: Path, out: Path, profile: str, per_channel: bool) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    qconfig = getattr(AutoQuantizationConfig, profile)(
        is_static=False, per_channel=per_channel, operators_to_quantize=["MatMul"]
    )
    ORTQuantizer.from_pretrained(fp32).quantize(save_dir=out, quantization_config=qconfig)
    for f in fp32.iterdir():
        if f.suffix != ".onnx" and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)
    return out


def measure(folder: Path, texts: list[str], labels: list[int], max_length: int, repeats: int) -> dict:
    clf = OnnxTextClassifier(folder, max_length)
    accuracy = float(np.mean(clf.predict_proba_batched(texts, 64).argmax(-1) == np.asarray(labels)))
    timed = texts[:256]
    per_text = {}
    for size in BATCHES:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(timed), size):
                clf.predict_proba(timed[i : i + size])
            best = min(best, (time.perf_counter() - started) / len(timed) * 1000)
        per_text[f"batch{size}_ms_per_text"] = round(best, 2)
    return {"accuracy": accuracy} | per_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sst2-classifier")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import mlflow

    from llmpath import tracking
    from llmpath.data import load_rows, resolve_path, validate_rows
    from llmpath.kinds.classify.recipe import ClassifyData

    tracking.configure()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(args.model, args.alias)
    run = client.get_run(version.tags["run_id"])
    max_length = int(run.data.params.get("model.max_length", 128))
    fp32 = tracking.download(version.tags["onnx.fp32_uri"])
    cfg = ClassifyData(train="sst2/dev.tsv", text_column="sentence", labels=["negative", "positive"])
    rows = validate_rows(load_rows(resolve_path(cfg.train)), cfg, "sst2/dev.tsv").kept
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]

    results = {"onnx fp32": measure(fp32, texts, labels, max_length, args.repeats)}
    with tempfile.TemporaryDirectory(prefix="int8-configs-") as tmp:
        for name, (profile, per_channel) in CONFIGS.items():
            folder = quantize(fp32, Path(tmp) / profile / str(per_channel), profile, per_channel)
            results[name] = measure(folder, texts, labels, max_length, args.repeats)
            print(name, results[name], flush=True)
    ref = results["onnx fp32"]
    for r in results.values():
        r["drop_points"] = round((ref["accuracy"] - r["accuracy"]) * 100, 2)
        r["batch1_speedup_vs_fp32"] = round(ref["batch1_ms_per_text"] / r["batch1_ms_per_text"], 2)
    chosen, why = int8_profile()
    report = {
        "model": f"{args.model} v{version.version} (@{args.alias})",
        "cpu": f"{platform.machine()}: {cpu_name()}, {os.cpu_count()} cores",
        "auto_choice": {"profile": chosen, "reason": why},
        "rows": len(texts),
        "forms": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_configs.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"CPU: {report['cpu']}. Model: {report['model']}, SST-2 dev ({len(texts)} rows). "
        f"`export.int8_for: auto` picks {chosen} here: {why}.",
        "",
        "| form | accuracy | drop (points) | ms/text batch 1 | batch 8 | batch 32 | batch-1 speed-up vs fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['drop_points']:+.2f} | {r['batch1_ms_per_text']:.2f} "
            f"| {r['batch8_ms_per_text']:.2f} | {r['batch32_ms_per_text']:.2f} | {r['batch1_speedup_vs_fp32']:.2f}x |"
        )
    (args.out / "int8_configs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
