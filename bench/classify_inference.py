"""PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 on the same SST-2 dev inputs, in one run.

Usage: python bench/classify_inference.py [--model sst2-classifier] [--alias champion]
Needs LLMPATH_DATA_DIR (for sst2/dev.tsv) and a model version made by `llmpath run recipes/classify-sst2.yaml`.
Writes bench/results/classify_inference.{json,md,png}; BENCHMARKS.md quotes the markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)


def timed(fn, inputs, repeats: int = 1) -> list[float]:
    """Milliseconds per call, after one warm-up call."""
    fn(inputs[0])
    out = []
    for _ in range(repeats):
        for item in inputs:
            start = time.perf_counter()
            fn(item)
            out.append((time.perf_counter() - start) * 1000)
    return out


def summarize(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "mean_ms": statistics.fmean(ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sst2-classifier")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch1-rows", type=int, default=200, help="rows timed one by one")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import mlflow
    import torch

    from bentos.classifier.runtime import OnnxTextClassifier
    from llmpath import tracking
    from llmpath.classifier import argmax, load_for_classification, predict
    from llmpath.config import DataConfig
    from llmpath.data import load_rows, resolve_path, validate_rows
    from llmpath.metrics import classification_metrics

    tracking.configure()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(args.model, args.alias)
    tags = version.tags
    run = client.get_run(tags["run_id"])
    labels = ["negative", "positive"]
    cfg = DataConfig(train="sst2/dev.tsv", text_column="sentence", labels=labels)
    rows = validate_rows(load_rows(resolve_path(cfg.train)), cfg, "sst2/dev.tsv").kept
    texts, y_true = [r["text"] for r in rows], [r["label"] for r in rows]
    max_length = int(run.data.params.get("model.max_length", 128))

    torch.set_num_threads(args.threads)
    model, tokenizer = load_for_classification(
        tracking.download_model(f"models:/{args.model}/{version.version}"), labels
    )
    engines = {
        "pytorch-fp32": lambda batch: predict(model, tokenizer, batch, max_length, batch_size=len(batch)),
    }
    for form in ("fp32", "int8"):
        clf = OnnxTextClassifier(
            tracking.download(tags[f"onnx.{form}_uri"]), max_length, threads=args.threads
        )
        engines[f"onnx-{form}"] = clf.predict_proba

    batch1 = [[t] for t in texts[: args.batch1_rows]]
    batch32 = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    results = {}
    for name, fn in engines.items():
        preds = []
        for batch in batch32:
            preds.extend(argmax([list(p) for p in fn(batch)]))
        results[name] = {
            "accuracy": classification_metrics(y_true, preds, labels)["accuracy"],
            "batch1": summarize(timed(fn, batch1)),
            "batch32": summarize(timed(fn, batch32)),
        }
        print(name, json.dumps(results[name]))
    ref = results["pytorch-fp32"]
    for r in results.values():
        r["speedup_batch1"] = ref["batch1"]["p50_ms"] / r["batch1"]["p50_ms"]
        r["speedup_batch32"] = ref["batch32"]["p50_ms"] / r["batch32"]["p50_ms"]
        r["accuracy_drop_points"] = (ref["accuracy"] - r["accuracy"]) * 100

    report = {
        "model": f"{args.model} v{version.version} (@{args.alias})",
        "rows": len(texts),
        "threads": args.threads,
        "training": {
            "train_seconds": run.data.metrics.get("train_seconds"),
            "train_rows": run.data.metrics.get("data.train_rows"),
            "candidate_accuracy": run.data.metrics.get("candidate.accuracy"),
            "base_accuracy": run.data.metrics.get("base.accuracy"),
        },
        "engines": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "classify_inference.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Model: {report['model']}, SST-2 dev ({len(texts)} rows), {args.threads} threads, "
        f"batch-1 latency over the first {len(batch1)} rows, batch-32 over all {len(batch32)} batches.",
        "",
        "| engine | accuracy | drop (points) | batch 1 p50 ms | speed-up b1 | batch 32 p50 ms | speed-up b32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['accuracy_drop_points']:+.2f} | {r['batch1']['p50_ms']:.2f} "
            f"| {r['speedup_batch1']:.2f}x | {r['batch32']['p50_ms']:.1f} | {r['speedup_batch32']:.2f}x |"
        )
    (args.out / "classify_inference.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=120)
    for ax, key in zip(axes, ("batch1", "batch32"), strict=True):
        ax.bar(list(results), [r[key]["p50_ms"] for r in results.values()], color=["#888", "#4a7", "#27a"])
        ax.set_title(f"{key} p50 latency (ms)")
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "classify_inference.png")
    with tracking.use_run(tags["run_id"]):
        mlflow.log_figure(fig, "bench/latency.png")
        mlflow.log_dict(report, "bench/classify_inference.json")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
