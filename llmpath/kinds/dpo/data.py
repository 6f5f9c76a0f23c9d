"""dpo data: preference pairs validated by row and field, a seeded held-out split, each pair rendered with the
base model's chat template (prompt up to the assistant header; each answer through its end-of-turn token),
answers cut or the pair dropped when it overflows the window. And the base: `registry:NAME` is that chat
model's champion."""

from __future__ import annotations

import json

from llmpath.chat import TemplateError, prompt_ids, render
from llmpath.kinds.dpo.pairs import Pair, PairReport, fit_window, validate_pairs
from llmpath.protocol import CheckedData
from llmpath.splits import file_rows, files_markdown, load_splits, percentiles

REGISTRY = "registry:"


def validate_rows(rows: list, cfg, label: str) -> PairReport:
    return validate_pairs(rows, cfg.pair_format, label)


def split_pairs(cfg) -> tuple[dict[str, list[Pair]], list[PairReport]]:
    """Validated, deterministic train/held-out pairs (a validation file, or a split seeded by data.seed)."""
    return load_splits(cfg, validate_rows, key=lambda pair: pair.key())


def resolve_base(recipe):
    """`registry:NAME`: the merged weights of NAME's champion version (a causal LM); else `model.base` as every
    kind resolves it (packaged, local, hub)."""
    from llmpath.sources import resolve_model

    source = recipe.model.base
    if not source.startswith(REGISTRY):
        return resolve_model(source, recipe.model.revision)
    return _champion(source)


def _champion(source: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    from llmpath import tracking
    from llmpath.sources import ModelSourceError, ResolvedModel

    name = source.removeprefix(REGISTRY)
    tracking.configure()
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException:
        raise ModelSourceError(
            f"model.base {source}: {name} has no champion in the registry; run its chat recipe first"
        ) from None
    folder = tracking.download_model(version.source)
    config = folder / "config.json"
    arch = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    if not any(str(a).endswith("ForCausalLM") for a in arch):
        raise ModelSourceError(f"model.base {source}: v{version.version} is not a causal LM")
    return ResolvedModel(folder, f"{name} v{version.version} (run {version.run_id})", source)


def render_pairs(tokenizer, pairs: list[Pair], max_length: int, overflow: str) -> tuple[list[dict], dict]:
    """Token ids of each pair: the prompt (the chat template up to the assistant header, as the chat Bento
    encodes a request) and each answer as the assistant turn that follows it (content and end-of-turn)."""
    rows, truncated, dropped = [], 0, 0
    for pair in pairs:
        messages = pair.messages()
        prompt = prompt_ids(tokenizer, messages)
        answers = []
        for text in (pair.chosen, pair.rejected):
            full = render(tokenizer, messages + [{"role": "assistant", "content": text}], 10**9).input_ids
            if full[: len(prompt)] != prompt:
                raise TemplateError("the chat template renders the prompt differently once an answer follows")
            answers.append(full[len(prompt) :])
        fitted = fit_window(prompt, answers[0], answers[1], max_length, overflow)
        if fitted is None:
            dropped += 1
            continue
        chosen, rejected, cut = fitted
        truncated += cut
        rows.append(
            {
                "prompt": json.dumps(messages, ensure_ascii=False),
                "chosen": pair.chosen,
                "rejected": pair.rejected,
                "prompt_ids": prompt,
                "chosen_ids": chosen,
                "rejected_ids": rejected,
                "truncated": cut,
            }
        )
    return rows, {"truncated": truncated, "dropped_too_long": dropped}


def check_data(recipe) -> CheckedData:
    """Load, validate, split and render the pairs; the report counts truncated and dropped pairs."""
    from transformers import AutoTokenizer

    splits, reports = split_pairs(recipe.data)
    base = resolve_base(recipe)
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=False)
    rendered, report = {}, {"kind": "dpo", "splits": {}, "files": []}
    for name, pairs in splits.items():
        rows, counts = render_pairs(tokenizer, pairs, recipe.model.max_length, recipe.data.overflow)
        if not rows:
            raise ValueError(
                f"data.{name}: no pair left after the length rule (model.max_length={recipe.model.max_length}, "
                f"data.overflow={recipe.data.overflow})"
            )
        rendered[name] = rows
        report["splits"][name] = {
            "pairs": len(rows),
            "prompt_tokens": percentiles([len(r["prompt_ids"]) for r in rows]),
            "chosen_tokens": percentiles([len(r["chosen_ids"]) for r in rows]),
            "rejected_tokens": percentiles([len(r["rejected_ids"]) for r in rows]),
        } | counts
    report["files"] = file_rows(reports)
    return CheckedData(rendered, reports, report, report_markdown(report, recipe), base)


def report_markdown(report: dict, recipe) -> str:
    max_length, overflow = recipe.model.max_length, recipe.data.overflow
    lines = [
        "# Data report (dpo)",
        "",
        f"| split | pairs | prompt tokens p50/max | chosen p50/max | rejected p50/max | over {max_length} tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report["splits"].items():
        p, c, r = s["prompt_tokens"], s["chosen_tokens"], s["rejected_tokens"]
        rule = f"{s['truncated']} cut, " if overflow == "truncate" else ""
        lines.append(
            f"| {name} | {s['pairs']} | {p['p50']:.0f}/{p['max']:.0f} | {c['p50']:.0f}/{c['max']:.0f} "
            f"| {r['p50']:.0f}/{r['max']:.0f} | {rule}{s['dropped_too_long']} dropped |"
        )
    return "\n".join(lines + files_markdown(report)) + "\n"


def prepare(recipe, run_id: str):
    """Write the rendered splits and the report to the run; the length rule's counts become metrics."""
    from llmpath.splits import write_checked

    checked = check_data(recipe)
    splits = checked.report["splits"]
    metrics = {f"data.{n}_truncated": s["truncated"] for n, s in splits.items()} | {
        f"data.{n}_dropped_too_long": s["dropped_too_long"] for n, s in splits.items()
    }
    return write_checked(run_id, checked, metrics=metrics)
