"""The chat kind's side of the shared stages: `prepare_data`, `finetune`, `evaluate_*`, `export` and `parity`
call in here when `recipe.kind == "chat"`, so the flow keeps the same stage names, caching and hand-overs as
classify.

- data: Alpaca / `messages` / ShareGPT rows, validated by row and field, rendered with the base model's chat
  template, labels on assistant tokens only; over-long conversations cut or dropped and counted.
- training: LoRA on a causal LM, QLoRA when `lora.quantization` asks for 4-bit or 8-bit (bitsandbytes).
- evaluation: assistant-token loss and perplexity on the whole validation split, greedy answers on its first
  prompts scored with ROUGE-L, answers logged as an MLflow table.
- export: merged model -> ONNX fp32 with KV cache, plus each quantized form the recipe lists.
- parity: every form against PyTorch's greedy tokens (teacher-forced top-1 agreement and identical answers)
  and its decoding speed; the recipe's floor decides which forms may ship, the recipe's preference which does.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from llmpath import tracking
from llmpath.causal import (
    as_rendered,
    assistant_loss,
    export_causal_onnx,
    greedy,
    load_causal,
    merge_full_precision,
    quantize_form,
    with_lora,
)
from llmpath.chat import ChatColumns, ChatReport, prompt_ids, render, validate_conversations
from llmpath.config import DataConfig, Recipe
from llmpath.metrics import perplexity, rouge_l
from tasks.results import Evaluation, ExportedModel, ParityResult, PreparedData, TrainedModel


# ----------------------------------------------------------------------------------------------- data
def columns(cfg: DataConfig) -> ChatColumns:
    return ChatColumns(format=cfg.chat_format, **cfg.columns)


def split_conversations(cfg: DataConfig) -> tuple[dict[str, list], list[ChatReport]]:
    """Validated, deterministic train/validation conversations (a validation file, or a seeded split)."""
    from tasks.data import load_splits

    def validate(rows: list[dict], cfg: DataConfig, label: str) -> ChatReport:
        return validate_conversations(rows, columns(cfg), label)

    return load_splits(cfg, validate, key=_key)


def _key(messages: list[dict[str, str]]) -> str:
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


def render_split(tokenizer, conversations: list, max_length: int, overflow: str) -> tuple[list[dict], dict]:
    """Rows ready for training (ids, labels) and counts of what the length rule did."""
    rows, truncated, dropped = [], 0, 0
    for messages in conversations:
        item = render(tokenizer, messages, max_length, overflow)
        if item is None:
            dropped += 1
            continue
        truncated += item.truncated
        rows.append(
            {
                "messages": _key(messages),
                "input_ids": item.input_ids,
                "labels": item.labels,
                "truncated": item.truncated,
            }
        )
    return rows, {"truncated": truncated, "dropped_too_long": dropped}


def _percentiles(lengths: list[int]) -> dict[str, float]:
    import numpy as np

    if not lengths:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    values = np.array(lengths)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": float(values.max())}


def check_chat_data(recipe: Recipe):
    """Load, validate and render the recipe's conversations; the report counts truncated and dropped rows."""
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model
    from tasks.data import file_rows

    splits, reports = split_conversations(recipe.data)
    base = resolve_model(recipe.model.base, recipe.model.revision)
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=False)
    rendered, report = {}, {"kind": "chat", "splits": {}, "files": []}
    for name, conversations in splits.items():
        rows, counts = render_split(tokenizer, conversations, recipe.model.max_length, recipe.data.overflow)
        if not rows:
            raise ValueError(
                f"data.{name}: no conversation left after the length rule (model.max_length="
                f"{recipe.model.max_length}, data.overflow={recipe.data.overflow})"
            )
        rendered[name] = rows
        report["splits"][name] = {
            "rows": len(rows),
            "turns": sum(len(json.loads(r["messages"])) for r in rows),
            "assistant_tokens": sum(sum(1 for x in r["labels"] if x != -100) for r in rows),
            "tokens": _percentiles([len(r["input_ids"]) for r in rows]),
        } | counts
    report["files"] = file_rows(reports)
    return rendered, reports, report, base


def chat_report_markdown(report: dict, max_length: int, overflow: str) -> str:
    lines = [
        "# Data report (chat)",
        "",
        f"| split | conversations | turns | assistant tokens | tokens p50/p90/p99/max | over {max_length} tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        t = s["tokens"]
        rule = f"{s['truncated']} truncated" if overflow == "truncate" else f"{s['dropped_too_long']} dropped"
        lines.append(
            f"| {name} | {s['rows']} | {s['turns']} | {s['assistant_tokens']} "
            f"| {t['p50']:.0f}/{t['p90']:.0f}/{t['p99']:.0f}/{t['max']:.0f} | {rule} |"
        )
    lines += ["", "| file | rows | kept | dropped | why |", "|---|---|---|---|---|"]
    for f in report["files"]:
        why = ", ".join(f"{k}: {v}" for k, v in f["why"].items()) or "-"
        lines.append(f"| {f['file']} | {f['rows']} | {f['kept']} | {f['dropped']} | {why} |")
    return "\n".join(lines) + "\n"


def prepare_chat(recipe: Recipe, run_id: str) -> PreparedData:
    import mlflow
    import pandas as pd

    from llmpath import data as d
    from tasks.publish import publish_markdown

    splits, reports, report, base = check_chat_data(recipe)
    markdown = chat_report_markdown(report, recipe.model.max_length, recipe.data.overflow)
    out = tracking.scratch("data-")
    digest = hashlib.sha256()
    for name, rows in splits.items():
        pd.DataFrame(rows).to_parquet(out / f"{name}.parquet", index=False)
        digest.update(json.dumps(rows, sort_keys=True).encode())
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown)
    d.write_issues_csv(reports, out / "row_issues.csv")
    fingerprint = digest.hexdigest()[:16]
    with tracking.use_run(run_id):
        mlflow.log_artifacts(str(out), "data")
        mlflow.log_params({"data.fingerprint": fingerprint, "model.base_revision": base.revision})
        mlflow.log_metrics(
            {f"data.{name}_rows": len(rows) for name, rows in splits.items()}
            | {"data.dropped_rows": sum(r.rows - len(r.kept) for r in reports)}
            | {f"data.{n}_truncated": s["truncated"] for n, s in report["splits"].items()}
            | {f"data.{n}_dropped_too_long": s["dropped_too_long"] for n, s in report["splits"].items()}
        )
    publish_markdown("data-report", markdown, f"Data report for {recipe.name}")
    print(markdown)
    return PreparedData(
        run_id=run_id,
        uri=tracking.artifact_uri(run_id, "data"),
        fingerprint=fingerprint,
        rows={k: len(v) for k, v in splits.items()},
        base_revision=base.revision,
    )


# ------------------------------------------------------------------------------------------- training
class ChatObjective:
    """Causal LM: LoRA (or QLoRA) adapters, cross-entropy on the assistant tokens only."""

    task = "text-generation"

    @staticmethod
    def build(recipe: Recipe, base_path: Path, device):
        model, tokenizer = load_causal(base_path, recipe.lora.quantization)
        quantized = recipe.lora.quantization != "none"
        if not quantized:
            model = model.to(device)  # a k-bit model is placed on its device when it loads
        lora = recipe.lora
        return with_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules, quantized), tokenizer

    @staticmethod
    def length(row: dict) -> int:
        return len(row["input_ids"])

    @staticmethod
    def loss(model, tokenizer, batch: list[dict], recipe: Recipe, device):
        from llmpath.chat import pad_batch

        enc = {
            k: v.to(device)
            for k, v in pad_batch([as_rendered(r) for r in batch], tokenizer.pad_token_id).items()
        }
        return model(**enc).loss, int(enc["attention_mask"].sum())

    @staticmethod
    def merged(model, recipe: Recipe, base_path: Path, adapter_dir: Path):
        if recipe.lora.quantization == "none":
            return model.merge_and_unload()
        return merge_full_precision(base_path, adapter_dir)


# ----------------------------------------------------------------------------------------- evaluation
def eval_prompts(rows: list[dict], limit: int) -> list[tuple[list[dict], str]]:
    """(conversation before the last answer, that answer) for the first `limit` untruncated rows."""
    out = []
    for row in rows:
        messages = json.loads(row["messages"])
        if row["truncated"] or messages[-1]["role"] != "assistant":
            continue
        out.append((messages[:-1], messages[-1]["content"]))
        if len(out) == limit:
            break
    return out


def score_chat(recipe: Recipe, data: PreparedData, run_id: str, name: str, model_dir: Path) -> Evaluation:
    """Loss and perplexity on the validation split; greedy answers on its first prompts, with ROUGE-L."""
    import mlflow
    import torch
    from tqdm.auto import tqdm

    from tasks.train import read_split

    rows = read_split(data, "validation")
    model, tokenizer = load_causal(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    loss, tokens = assistant_loss(model, rows, tokenizer.pad_token_id, recipe.eval.batch_size)
    stop = [tokenizer.eos_token_id]
    answers = []
    for messages, reference in tqdm(eval_prompts(rows, recipe.eval.max_prompts), desc=f"answer ({name})"):
        ids = prompt_ids(tokenizer, messages)
        new = greedy(model, ids, recipe.eval.max_new_tokens, stop)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        answers.append(
            {
                "prompt": messages[-1]["content"],
                "reference": reference,
                "answer": text,
                "rouge_l": rouge_l(text, reference),
                "stopped": bool(new and new[-1] in stop),
                "prompt_ids": ids,
                "answer_ids": new,
            }
        )
    metrics = {
        "loss": loss,
        "perplexity": perplexity(loss),
        "rouge_l": sum(a["rouge_l"] for a in answers) / max(len(answers), 1),
        "stopped_share": sum(a["stopped"] for a in answers) / max(len(answers), 1),
    }
    folder = tracking.scratch("eval-")
    (folder / "answers.json").write_text(json.dumps(answers, ensure_ascii=False))
    (folder / "metrics.json").write_text(json.dumps(metrics | {"assistant_tokens": tokens}, indent=2))
    with tracking.use_run(run_id):
        mlflow.log_metrics({f"{name}.{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(folder), f"eval/{name}")
        table = {k: [a[k] for a in answers] for k in ("prompt", "reference", "answer", "rouge_l")}
        mlflow.log_table(table, artifact_file=f"eval/{name}_answers.json")
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return Evaluation(
        name=name, metrics=metrics, predictions_uri=tracking.artifact_uri(run_id, f"eval/{name}/answers.json")
    )


def log_comparison(base: Evaluation, candidate: Evaluation, run_id: str) -> None:
    """One MLflow table with base and candidate answers side by side, prompt by prompt (for the gate)."""
    import mlflow

    before = json.loads(tracking.download(base.predictions_uri).read_text())
    after = json.loads(tracking.download(candidate.predictions_uri).read_text())
    rows = list(zip(before, after, strict=False))
    table = {
        "prompt": [a["prompt"] for a, _ in rows],
        "reference": [a["reference"] for a, _ in rows],
        "base_answer": [a["answer"] for a, _ in rows],
        "candidate_answer": [b["answer"] for _, b in rows],
        "base_rouge_l": [a["rouge_l"] for a, _ in rows],
        "candidate_rouge_l": [b["rouge_l"] for _, b in rows],
    }
    with tracking.use_run(run_id):
        mlflow.log_table(table, artifact_file="eval/base_vs_candidate.json")


# ----------------------------------------------------------------------------------- export and parity
def export_chat(recipe: Recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
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


def measure_form(folder: Path, probes: list[dict], stop: list[int]) -> dict[str, float]:
    """One ONNX form on the probe set: teacher-forced top-1 agreement with PyTorch's greedy tokens, share of
    identical greedy answers, decoding tokens/s and time to first token."""
    import numpy as np

    from bentos.chat.runtime import OnnxCausalLM

    llm = OnnxCausalLM(folder)
    agree = total = identical = generated = 0
    decode_seconds, first_token = 0.0, []
    for probe in probes:
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
    from tasks.export import ParityError

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


def parity_chat(recipe: Recipe, exported: ExportedModel, candidate: Evaluation, run_id: str) -> ParityResult:
    import mlflow

    from llmpath.metrics import plot_forms

    answers = json.loads(tracking.download(candidate.predictions_uri).read_text())
    probes = answers[: recipe.export.probe_prompts]
    if not probes:
        raise ValueError("parity: the candidate evaluation answered no prompts (raise eval.max_prompts)")
    fp32_dir = tracking.download(exported.fp32_uri)
    from transformers import AutoTokenizer

    stop = [AutoTokenizer.from_pretrained(fp32_dir).eos_token_id]  # as in evaluation and in the service
    forms = {"fp32": exported.fp32_uri} | exported.quantized
    scores = {form: measure_form(tracking.download(uri), probes, stop) for form, uri in forms.items()}
    flat = {f"parity.{form}.{k}": v for form, s in scores.items() for k, v in s.items()}
    with tracking.use_run(run_id):
        mlflow.log_metrics(flat)
        mlflow.log_dict(scores, "parity/forms.json")
        tracking.log_figure(plot_forms(scores, recipe.export.min_agreement), "parity/forms.png")
        form, reason = choose_chat_form(scores, recipe.export.min_agreement, recipe.export.prefer)
        mlflow.set_tags({"deployable.form": form, "deployable.reason": reason})
    print(f"parity: {reason}")
    return ParityResult(deployable_form=form, deployable_uri=forms[form], metrics=flat, reason=reason)
