"""What a batch saves the classifier per text on this CPU: compute per text (CPU time and wall time) at batch
1, 4, 16 and 32, with ONNX Runtime on 1 thread and on every core, for the ONNX fp32 and the int8 forms of one
model version, in one run. This is the ceiling of what adaptive batching can gain in `bench/serving_load.py`:
at concurrency 16 every core is busy either way, so what batching can save is CPU time per text.

Usage: python bench/classify_batch_cost.py [--model sst2-classifier] [--alias champion] [--texts 256]
           [--repeats 3] [--out bench/results]
Needs LLMPATH_DATA_DIR (sst2/dev.tsv) and a classify model version with ONNX fp32 and int8 forms. Writes
bench/results/classify_batch_cost.{json,md}; BENCHMARKS.md quotes the markdown.

Batches run as the service runs them (bentos/classifier/runtime.py: sorted by length, in groups of up to 8, each
padded to its longest text). Each figure is the best of `--repeats` passes over the same SST-2 dev sentences, so a busy moment costs one pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bentos.classifier.runtime import OnnxTextClassifier, cpu_name  # noqa: E402

BATCHES = (1, 4, 16, 32)


def per_text_cost(run, texts: list[str], size: int, repeats: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per text, best of `repeats` passes of `run` over `texts` in batches of `size`."""
    run(texts[:size])  # warm-up at this shape
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), size):
            run(texts[i : i + size])
        wall = min(wall, (time.perf_counter() - w0) / len(texts) * 1000)
        cpu = min(cpu, (time.process_time() - c0) / len(texts) * 1000)
    return round(wall, 2), round(cpu, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sst2-classifier")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--texts", type=int, default=256)
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
    forms = {"onnx fp32": tracking.download(version.tags["onnx.fp32_uri"])}
    if version.tags.get("onnx.int8_uri"):
        forms["onnx int8"] = tracking.download(version.tags["onnx.int8_uri"])
    cfg = ClassifyData(train="sst2/dev.tsv", text_column="sentence", labels=["negative", "positive"])
    texts = [r["text"] for r in validate_rows(load_rows(resolve_path(cfg.train)), cfg, "sst2/dev.tsv").kept]
    texts = texts[: args.texts]

    rows = []
    for form, folder in forms.items():
        for threads in (1, os.cpu_count() or 1):
            clf = OnnxTextClassifier(folder, max_length, threads=threads)
            for size in BATCHES:
                wall, cpu = per_text_cost(clf.predict_proba, texts, size, args.repeats)
                row = {"form": form, "threads": threads, "batch": size, "wall_ms": wall, "cpu_ms": cpu}
                rows.append(row)
                print(row, flush=True)
    for r in rows:
        one = next(b for b in rows if (b["form"], b["threads"], b["batch"]) == (r["form"], 1, 1))
        r["cpu_saving_vs_batch1_1thread"] = round(one["cpu_ms"] / r["cpu_ms"], 2)
    report = {
        "model": f"{args.model} v{version.version} (@{args.alias})",
        "cpu": f"{platform.machine()}: {cpu_name()}, {os.cpu_count()} cores",
        "texts": len(texts),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "classify_batch_cost.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"CPU: {report['cpu']}. Model: {report['model']}, the first {len(texts)} SST-2 dev sentences.",
        "",
        "| form | ORT threads | batch | wall ms/text | CPU ms/text | CPU saved vs batch 1 on 1 thread |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['form']} | {r['threads']} | {r['batch']} | {r['wall_ms']:.2f} "
            f"| {r['cpu_ms']:.2f} | {r['cpu_saving_vs_batch1_1thread']:.2f}x |"
        )
    (args.out / "classify_batch_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
