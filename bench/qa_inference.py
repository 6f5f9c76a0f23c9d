"""Extractive QA: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 on the held-out questions of a qa run,
answer by answer: latency per question (tokenization and span decoding included), EM/F1 of each and span
agreement with PyTorch.

Usage: python bench/qa_inference.py [--model squad-qa] [--version N] [--rounds 3]
Needs LLMPATH_HOME with a model version made by `llmpath run recipes/qa-squad.yaml`. Writes
bench/results/qa_inference.{json,md}; BENCHMARKS.md quotes the markdown.

The engines take turns question by question, so drift in machine load hits them alike; one process, torch and
ONNX Runtime each limited to `--threads`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bentos.classifier.runtime import cpu_name  # noqa: E402
from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="squad-qa")
    parser.add_argument("--version", default=None, help="default: the champion")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import mlflow
    import onnxruntime as ort
    import torch
    import yaml

    from bentos.qa.runtime import OnnxReader, best_span
    from llmpath import tracking
    from llmpath.families.span.reader import span_agreement, torch_logits
    from llmpath.families.span.squad import squad_scores
    from llmpath.kinds.qa.objective import load_span_model
    from llmpath.recipes import parse_recipe
    from llmpath.results import PreparedData
    from llmpath.splits import read_split

    torch.set_num_threads(args.threads)
    tracking.configure()
    client = mlflow.MlflowClient()
    mv = (
        client.get_model_version(args.model, args.version)
        if args.version
        else client.get_model_version_by_alias(args.model, "champion")
    )
    run = client.get_run(mv.run_id)
    recipe = parse_recipe(
        yaml.safe_load(Path(tracking.download(f"runs:/{mv.run_id}/recipe.yaml")).read_text())
    )
    data = PreparedData(
        run_id=run.info.run_id,
        uri=tracking.artifact_uri(run.info.run_id, "data"),
        fingerprint="",
        rows={},
        base_revision="",
    )
    rows = read_split(data, "validation")
    model, tokenizer = load_span_model(tracking.download_model(mv.source))
    model.eval()
    logits = torch_logits(model)
    cfg = recipe.serve

    def pytorch(question, context):
        start, end, win = logits(tokenizer, question, context, recipe.model.max_length, cfg.stride)
        s, e, score = best_span(start, end, win["offsets"], win["in_context"], cfg.max_answer_tokens)
        return {"answer": context[s:e], "start": s, "end": e, "score": score}

    engines = {"pytorch-fp32": pytorch}
    for form in ("fp32", "int8"):
        folder = tracking.download(tracking.artifact_uri(mv.run_id, f"onnx/{form}"))
        reader = OnnxReader(folder, recipe.model.max_length, cfg.stride, cfg.max_answer_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        reader.session = ort.InferenceSession(
            str(next(Path(folder).glob("*.onnx"))), options, providers=["CPUExecutionProvider"]
        )
        engines[f"onnx-{form}"] = reader.answer
    times = {name: [] for name in engines}
    answers = {name: [] for name in engines}
    for r in range(args.rounds):
        for row in rows:
            for name, fn in engines.items():
                t0 = time.perf_counter()
                got = fn(row["question"], row["context"])
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    answers[name].append(got)
    refs = [list(r["answers"]) for r in rows]
    result = {
        "model": f"{args.model} v{mv.version}",
        "questions": len(rows),
        "rounds": args.rounds,
        "threads": args.threads,
        "host": f"{platform.machine()}: {cpu_name()}",
        "engines": {},
    }
    for name in engines:
        q = squad_scores([a["answer"] for a in answers[name]], refs)
        ms = sorted(t * 1000 for t in times[name])
        result["engines"][name] = {
            "median_ms": statistics.median(ms),
            "p90_ms": ms[int(0.9 * (len(ms) - 1))],
            "exact_match": q["exact_match"],
            "f1": q["f1"],
            "span_agreement": span_agreement(answers["pytorch-fp32"], answers[name]),
        }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "qa_inference.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"{result['model']}, {len(rows)} held-out questions x {args.rounds} rounds, {args.threads} threads, "
        f"{result['host']}",
        "",
        "| engine | median ms / question | p90 ms | EM | F1 | same span as PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in result["engines"].items():
        lines.append(
            f"| {name} | {e['median_ms']:.1f} | {e['p90_ms']:.1f} | {e['exact_match']:.3f} | {e['f1']:.3f} | "
            f"{e['span_agreement']:.3f} |"
        )
    (out / "qa_inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
