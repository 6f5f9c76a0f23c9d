"""PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 on the same SST-2 dev inputs, in one run.

Usage: python bench/classify_inference.py [--model sst2-classifier] [--alias champion]
Needs LLMPATH_DATA_DIR (for sst2/dev.tsv) and a model version made by `llmpath run recipes/classify-sst2.yaml`.
Writes bench/results/classify_inference.{json,md,png} and logs the chart to the model's MLflow run;
BENCHMARKS.md quotes the markdown.

Each engine runs in its own worker process, as it would in deployment: PyTorch's and ONNX Runtime's thread
pools in one process slow each other down on two cores and would distort the comparison. Engines take turns in
rounds, so drift in machine load hits all of them alike. Latency includes tokenization.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bentos.classifier.runtime import check_int8_host, cpu_name, int8_profile  # noqa: E402
from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)
ENGINES = ("pytorch-fp32", "onnx-fp32", "onnx-int8")


def load_engine(name: str, folder: str, max_length: int, threads: int):
    """A callable: list of texts -> class probabilities (rows)."""
    if name == "pytorch-fp32":
        import torch

        from llmpath.classifier import load_for_classification, predict

        torch.set_num_threads(threads)
        config = json.loads((Path(folder) / "config.json").read_text())
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        model, tokenizer = load_for_classification(folder, labels)
        return lambda batch: predict(model, tokenizer, batch, max_length, batch_size=len(batch))
    from bentos.classifier.runtime import OnnxTextClassifier

    return OnnxTextClassifier(folder, max_length, threads=threads).predict_proba


def worker(args) -> int:
    """Time one engine on the given inputs; print JSON (latencies, and predictions when asked)."""
    spec = json.loads(Path(args.worker).read_text())
    fn = load_engine(spec["engine"], spec["folder"], spec["max_length"], spec["threads"])
    result = {}
    for key, size in (("batch1", 1), ("batch32", 32)):
        inputs = spec["texts"][: spec["batch1_rows"]] if size == 1 else spec["texts"]
        batches = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        fn(batches[0])  # warm-up
        ms = []
        for batch in batches:
            start = time.perf_counter()
            fn(batch)
            ms.append((time.perf_counter() - start) * 1000)
        result[key] = ms
    if spec["predict"]:
        texts = spec["texts"]
        probs = [p for i in range(0, len(texts), 32) for p in fn(texts[i : i + 32])]
        result["preds"] = [max(range(len(p)), key=lambda j, p=p: p[j]) for p in probs]
    print(json.dumps(result))
    return 0


def summarize(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "mean_ms": statistics.fmean(ms),
    }


def run_worker(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    done = subprocess.run(
        [sys.executable, __file__, "--worker", fh.name], capture_output=True, text=True, check=False
    )
    os.unlink(fh.name)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['engine']} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sst2-classifier")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch1-rows", type=int, default=200, help="rows timed one by one")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of turns over the engines")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import mlflow

    from llmpath import tracking
    from llmpath.data import load_rows, resolve_path, validate_rows
    from llmpath.kinds.classify.recipe import ClassifyData
    from llmpath.metrics.classification import classification_metrics

    tracking.configure()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(args.model, args.alias)
    tags = version.tags
    run = client.get_run(tags["run_id"])
    labels = ["negative", "positive"]
    cfg = ClassifyData(train="sst2/dev.tsv", text_column="sentence", labels=labels)
    rows = validate_rows(load_rows(resolve_path(cfg.train)), cfg, "sst2/dev.tsv").kept
    texts, y_true = [r["text"] for r in rows], [r["label"] for r in rows]
    folders = {
        "pytorch-fp32": tracking.download_model(f"models:/{args.model}/{version.version}"),
        "onnx-fp32": tracking.download(tags["onnx.fp32_uri"]),
        "onnx-int8": tracking.download(tags["onnx.int8_uri"]),
    }
    base_spec = {
        "texts": texts,
        "max_length": int(run.data.params.get("model.max_length", 128)),
        "threads": args.threads,
        "batch1_rows": args.batch1_rows,
    }
    lat = {name: {"batch1": [], "batch32": [], "round_p50_batch1": []} for name in ENGINES}
    preds = {}
    for r in range(args.rounds):
        for name in ENGINES:
            out = run_worker(base_spec | {"engine": name, "folder": str(folders[name]), "predict": r == 0})
            lat[name]["batch1"] += out["batch1"]
            lat[name]["batch32"] += out["batch32"]
            lat[name]["round_p50_batch1"].append(statistics.median(out["batch1"]))
            preds.setdefault(name, out.get("preds"))
            print(f"round {r + 1}: {name} batch-1 p50 {statistics.median(out['batch1']):.2f} ms", flush=True)

    results = {
        name: {
            "accuracy": classification_metrics(y_true, preds[name], labels)["accuracy"],
            "batch1": summarize(lat[name]["batch1"]),
            "batch32": summarize(lat[name]["batch32"]),
            "round_p50_batch1_ms": lat[name]["round_p50_batch1"],
        }
        for name in ENGINES
    }
    ref = results["pytorch-fp32"]
    for r in results.values():
        r["speedup_batch1"] = ref["batch1"]["p50_ms"] / r["batch1"]["p50_ms"]
        r["speedup_batch32"] = ref["batch32"]["p50_ms"] / r["batch32"]["p50_ms"]
        r["accuracy_drop_points"] = (ref["accuracy"] - r["accuracy"]) * 100
    int8_info = check_int8_host(folders["onnx-int8"])
    report = {
        "model": f"{args.model} v{version.version} (@{args.alias})",
        "cpu": f"{platform.machine()}: {cpu_name()}, {os.cpu_count()} cores, int8 profile here: {int8_profile()[0]}",
        "int8": int8_info or "exported before the choice was recorded",
        "rows": len(texts),
        "threads": args.threads,
        "rounds": args.rounds,
        "training": {
            "train_seconds": run.data.metrics.get("train_seconds"),
            "train_rows": run.data.metrics.get("data.train_rows"),
            "candidate_accuracy": run.data.metrics.get("candidate.accuracy"),
            "base_accuracy": run.data.metrics.get("base.accuracy"),
        },
        "engines": results,
    }
    write_outputs(report, args, len(texts), tags["run_id"])
    return 0


def write_outputs(report: dict, args, n_rows: int, run_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from llmpath import tracking

    results = report["engines"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "classify_inference.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"CPU: {report['cpu']}; the int8 form: "
        + (
            f"{i.get('profile')} ({i.get('weights')} weights)" if isinstance(i := report["int8"], dict) else i
        ),
        "",
        f"Model: {report['model']}, SST-2 dev ({n_rows} rows), {args.threads} threads; batch-1 latency over the "
        f"first {args.batch1_rows} rows, batch-32 over all rows; {args.rounds} rounds, each engine in its own "
        "process; tokenization included.",
        "",
        "| engine | accuracy | drop (points) | batch 1 p50 ms | rounds' p50 range | speed-up b1 "
        "| batch 32 p50 ms | speed-up b32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['accuracy_drop_points']:+.2f} | {r['batch1']['p50_ms']:.2f} "
            f"| {min(r['round_p50_batch1_ms']):.2f}-{max(r['round_p50_batch1_ms']):.2f} | {r['speedup_batch1']:.2f}x | {r['batch32']['p50_ms']:.1f} | {r['speedup_batch32']:.2f}x |"
        )
    (args.out / "classify_inference.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=120)
    for ax, key in zip(axes, ("batch1", "batch32"), strict=True):
        ax.bar(list(results), [r[key]["p50_ms"] for r in results.values()], color=["#888", "#4a7", "#27a"])
        ax.set_title(f"{key} p50 latency (ms)")
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "classify_inference.png")
    with tracking.use_run(run_id):
        mlflow.log_figure(fig, "bench/latency.png")
        mlflow.log_dict(report, "bench/classify_inference.json")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
