"""GGUF forms of SmolLM2-135M-Instruct side by side, in one run: file size against the fp32 safetensors, time to
write, and the teacher-forced top-1 agreement of each file (loaded back by transformers) with PyTorch's greedy
answers to Alpaca instructions, the check `llmpath gguf` applies before it attaches a form.

Usage: python bench/gguf_forms.py [--model packaged:smollm2-135m-instruct] [--prompts 16] [--new-tokens 32]
           [--out bench/results]
Needs LLMPATH_DATA_DIR (alpaca/alpaca_200.json). Writes bench/results/gguf_forms.{json,md}; BENCHMARKS.md quotes
the markdown. Speed of decoding is not measured: transformers dequantizes GGUF to fp32 when it loads it (llama.cpp,
which would run the quantized file, is not installable on these machines).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="packaged:smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bentos.classifier.runtime import cpu_name
    from llmpath import settings
    from llmpath.causal import greedy
    from llmpath.chat import prompt_ids
    from llmpath.families.causal_lm.gguf import FORMS, measure_gguf, write_gguf
    from llmpath.sources import resolve_model

    model_dir = Path(resolve_model(args.model).path)
    root = settings.data_root()
    if root is None or not (root / "alpaca" / "alpaca_200.json").is_file():
        print("set LLMPATH_DATA_DIR to the datasets folder (with alpaca/alpaca_200.json)", file=sys.stderr)
        return 2
    rows = json.loads((root / "alpaca" / "alpaca_200.json").read_text())
    instructions = [
        (r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")) for r in rows[: args.prompts]
    ]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stop = [tokenizer.eos_token_id]
    probes = []
    for text in instructions:
        ids = prompt_ids(tokenizer, [{"role": "user", "content": text}])
        probes.append({"prompt_ids": ids, "answer_ids": greedy(model, ids, args.new_tokens, stop)})
    del model
    fp32_mb = sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 2**20
    rows_out = {"fp32 safetensors": {"size_mb": fp32_mb, "top1_agreement": 1.0, "identical": 1.0}}
    with tempfile.TemporaryDirectory() as tmp:
        for form in FORMS:
            started = time.perf_counter()
            path = write_gguf(model_dir, Path(tmp) / form / f"model-{form}.gguf", form, "bench")
            written = time.perf_counter() - started
            started = time.perf_counter()
            scores = measure_gguf(path, probes)
            rows_out[f"GGUF {form}"] = scores | {
                "write_seconds": written,
                "check_seconds": time.perf_counter() - started,
            }
            path.unlink()
    result = {
        "model": args.model,
        "prompts": len(probes),
        "answer_tokens": sum(len(p["answer_ids"]) for p in probes),
        "machine": f"{cpu_name()} ({platform.machine()})",
        "date": time.strftime("%Y-%m-%d"),
        "forms": rows_out,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gguf_forms.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"GGUF forms of `{args.model}`: {result['prompts']} Alpaca instructions, {result['answer_tokens']} greedy "
        f"answer tokens; {result['machine']}, {result['date']}. Command: `python bench/gguf_forms.py`",
        "",
        "| form | size MB | size vs fp32 | top-1 agreement | identical answers | write s | load + check s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows_out.items():
        lines.append(
            f"| {name} | {s['size_mb']:.0f} | {s['size_mb'] / fp32_mb:.2f}x | {s['top1_agreement']:.4f} | "
            f"{s['identical']:.3f} | {s.get('write_seconds', 0):.1f} | {s.get('check_seconds', 0):.1f} |"
        )
    markdown = "\n".join(lines) + "\n"
    (args.out / "gguf_forms.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
