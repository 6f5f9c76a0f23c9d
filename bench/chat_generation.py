"""Chat generation: PyTorch fp32 vs ONNX Runtime fp32 vs every quantized ONNX form, in one run, on the same
prompts: decoding tokens/s, time to first token, and greedy agreement with PyTorch.

Usage: python bench/chat_generation.py [--model smollm2-alpaca --alias champion] [--prompts 8 --new-tokens 64]
Without --model it measures the packaged SmolLM2-135M-Instruct (the base every chat recipe tunes). Prompts are
the first Alpaca instructions of `alpaca/alpaca_200.json` under LLMPATH_DATA_DIR.
Writes bench/results/chat_generation.{json,md,png}; BENCHMARKS.md quotes the markdown.

Every engine runs in its own worker process (PyTorch's and ONNX Runtime's thread pools in one process slow
each other down on two cores), one after another, with the same threads. Greedy decoding with a KV cache in
both runtimes; PyTorch's greedy tokens are the reference. Agreement is teacher-forced top-1: each form reads
PyTorch's answer and predicts every next token, so one early difference does not count the rest as wrong.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)
FORMS = ("int8-weight", "int4-weight", "int8-dynamic")


def torch_worker(spec: dict) -> dict:
    import torch

    from llmpath.causal import load_causal

    torch.set_num_threads(spec["threads"])
    model, _ = load_causal(spec["folder"])
    model.eval()
    stop = spec["stop"]
    answers, ttft, seconds, tokens = [], [], 0.0, 0

    def decode(prompt: list[int]) -> tuple[list[int], float]:
        with torch.inference_mode():
            started = time.perf_counter()
            out = model(input_ids=torch.tensor([prompt]), use_cache=True)
            first = None
            new: list[int] = []
            while True:
                token = int(out.logits[0, -1].argmax())
                if first is None:
                    first = time.perf_counter() - started
                new.append(token)
                if token in stop or len(new) >= spec["new_tokens"]:
                    return new, first
                out = model(
                    input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True
                )

    decode(spec["prompts"][0])  # warm-up
    for prompt in spec["prompts"]:
        started = time.perf_counter()
        new, first = decode(prompt)
        seconds += time.perf_counter() - started
        answers.append(new)
        ttft.append(first)
        tokens += len(new)
    return {"answers": answers, "ttft": ttft, "seconds": seconds, "tokens": tokens}


def onnx_worker(spec: dict) -> dict:
    import numpy as np

    from bentos.chat.runtime import OnnxCausalLM

    llm = OnnxCausalLM(spec["folder"], threads=spec["threads"])
    stop = spec["stop"]
    list(llm.stream(spec["prompts"][0], 4, stop))  # warm-up
    ttft, seconds, tokens, agree, total, identical = [], 0.0, 0, 0, 0, 0
    for prompt, reference in zip(spec["prompts"], spec["reference"], strict=True):
        new, started, first = [], time.perf_counter(), None
        for token in llm.stream(prompt, spec["new_tokens"], ()):
            if first is None:
                first = time.perf_counter() - started
            new.append(token)
            if token in stop:
                break
        seconds += time.perf_counter() - started
        ttft.append(first)
        tokens += len(new)
        identical += new == reference
        logits = llm.logits(prompt + reference[:-1])[len(prompt) - 1 :]
        agree += int((np.argmax(logits, axis=-1) == np.asarray(reference)).sum())
        total += len(reference)
    return {
        "ttft": ttft,
        "seconds": seconds,
        "tokens": tokens,
        "top1_agreement": agree / total,
        "identical": identical / len(spec["prompts"]),
    }


def run_worker(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", fh.name], capture_output=True, text=True, check=False
    )
    os.unlink(fh.name)
    if out.returncode != 0:
        raise RuntimeError(f"worker {spec['engine']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_folder(args) -> tuple[Path, str]:
    from llmpath import tracking
    from llmpath.sources import resolve_model

    if args.model:
        import mlflow

        tracking.configure()
        version = mlflow.MlflowClient().get_model_version_by_alias(args.model, args.alias)
        return tracking.download_model(
            version.tags["model_uri"]
        ), f"{args.model}@{args.alias} v{version.version}"
    source = "packaged:smollm2-135m-instruct"
    return resolve_model(source).path, source


def prompts(tokenizer, n: int) -> list[list[int]]:
    from llmpath.chat import prompt_ids
    from llmpath.data import resolve_path

    rows = json.loads(resolve_path("alpaca/alpaca_200.json").read_text())
    out = []
    for row in rows[:n]:
        text = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        out.append(prompt_ids(tokenizer, [{"role": "user", "content": text}]))
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["engine"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(
        axes,
        ("tokens_per_second", "ttft_ms", "top1_agreement"),
        ("decoding tokens/s", "time to first token (ms)", "top-1 agreement with PyTorch"),
        strict=True,
    ):
        ax.bar(names, [r[key] for r in rows], color="#4c72b0")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
    axes[2].axhline(0.95, color="#c44e52", linestyle="--", label="default floor 0.95")
    axes[2].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="registered chat model (default: the packaged SmolLM2 base)")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        fn = torch_worker if spec["engine"] == "pytorch-fp32" else onnx_worker
        print(json.dumps(fn(spec)))
        return 0

    from transformers import AutoTokenizer

    from llmpath.causal import export_causal_onnx, quantize_form

    folder, source = model_folder(args)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    work = Path(tempfile.mkdtemp(prefix="llmpath-bench-chat-"))
    atexit.register(shutil.rmtree, work, True)  # five ONNX forms: about 1.2 GB
    started = time.perf_counter()
    export_causal_onnx(folder, work / "fp32")
    print(f"exported {source} to ONNX in {time.perf_counter() - started:.0f} s", flush=True)
    for form in FORMS:
        quantize_form(form, work / "fp32", work / form, args.block_size)
    base = {
        "prompts": prompts(tokenizer, args.prompts),
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "stop": [tokenizer.eos_token_id],
    }
    results = {"pytorch-fp32": run_worker(base | {"engine": "pytorch-fp32", "folder": str(folder)})}
    reference = results["pytorch-fp32"]["answers"]
    print("pytorch-fp32 done", flush=True)
    for engine in ("onnx-fp32", *(f"onnx-{f}" for f in FORMS)):
        sub = work / engine.removeprefix("onnx-")
        results[engine] = run_worker(base | {"engine": engine, "folder": str(sub), "reference": reference})
        print(f"{engine} done", flush=True)

    rows = []
    for engine, r in results.items():
        size = sum(p.stat().st_size for p in (work / engine.removeprefix("onnx-")).glob("*.onnx*"))
        rows.append(
            {
                "engine": engine,
                "tokens_per_second": r["tokens"] / r["seconds"],
                "ttft_ms": 1000 * sum(r["ttft"]) / len(r["ttft"]),
                "top1_agreement": r.get("top1_agreement", 1.0),
                "identical": r.get("identical", 1.0),
                "size_mb": size / 2**20 if engine != "pytorch-fp32" else float("nan"),
            }
        )
    torch_speed = rows[0]["tokens_per_second"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Model: {source}; {args.prompts} Alpaca prompts, greedy, up to {args.new_tokens} new tokens, "
        f"batch 1, {args.threads} threads, KV cache.",
        "",
        "| engine | tokens/s | vs PyTorch | time to first token | top-1 agreement | identical answers | ONNX size |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = "-" if r["engine"] == "pytorch-fp32" else f"{r['size_mb']:.0f} MB"
        lines.append(
            f"| {r['engine']} | {r['tokens_per_second']:.1f} | {r['tokens_per_second'] / torch_speed:.2f}x "
            f"| {r['ttft_ms']:.0f} ms | {r['top1_agreement']:.3f} | {r['identical']:.2f} | {size} |"
        )
    markdown = "\n".join(lines) + "\n"
    (out / "chat_generation.md").write_text(markdown)
    (out / "chat_generation.json").write_text(json.dumps({"source": source, "rows": rows}, indent=2))
    plot(rows, out / "chat_generation.png", f"Chat generation: {source}")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
