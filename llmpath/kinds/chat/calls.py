"""Tool-call accuracy (`eval.metric: call_accuracy`): on held-out conversations, the model answers the turn
before each conversation's first function call greedily, and the answer is read as the chat Bento reads it
(bentos/chat/tools.py). A call counts when it names the right function and its arguments parse, pass the
tool's schema and equal the reference's."""

from __future__ import annotations

import json
from typing import Any


def call_prompts(rows: list[dict], limit: int) -> list[tuple[list[dict], dict[str, Any]]]:
    """(conversation before its first call, that call) for the first `limit` rows with a call. The reference
    is the row's own call as written (the length rule cuts training ids, never this)."""
    out = []
    for row in rows:
        messages = json.loads(row["messages"])
        at = next((i for i, m in enumerate(messages) if m.get("tool_calls")), None)
        if at is None:
            continue
        out.append((messages[:at], messages[at]["tool_calls"][0]))
        if len(out) == limit:
            break
    return out


def score_call(text: str, functions: list[dict], reference: dict[str, Any]) -> dict[str, Any]:
    """One answer against its reference call: whether it parsed to a valid call, named the right function,
    and carried equal arguments (`correct`)."""
    from bentos.chat.tools import parse_calls

    parsed = parse_calls(text, functions)
    call = parsed.calls[0] if parsed.calls else None
    name_ok = call is not None and call["name"] == reference["name"]
    correct = name_ok and json.loads(call["arguments"]) == reference["arguments"]
    return {
        "valid_call": call is not None,
        "right_function": name_ok,
        "correct": correct,
        "problem": parsed.problem,
    }


def call_metrics(scores: list[dict[str, Any]]) -> dict[str, float]:
    n = max(len(scores), 1)
    return {
        "call_accuracy": sum(s["correct"] for s in scores) / n,
        "function_accuracy": sum(s["right_function"] for s in scores) / n,
        "valid_call_share": sum(s["valid_call"] for s in scores) / n,
        "call_prompts": float(len(scores)),
    }


def answer_calls(
    model, tokenizer, rows: list[dict], limit: int, max_new_tokens: int, name: str
) -> list[dict]:
    """Greedy answers to the call prompts, each scored; `prompt_ids`/`answer_ids` kept for the parity gate."""
    from llmpath import progress
    from llmpath.causal import greedy
    from llmpath.chat import prompt_ids

    stop = [tokenizer.eos_token_id]
    answers = []
    for messages, reference in progress.track(
        call_prompts(rows, limit), desc=f"calls ({name})", unit="prompts"
    ):
        ids = prompt_ids(tokenizer, messages)
        new = greedy(model, ids, max_new_tokens, stop)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        functions = next((m["tools"] for m in messages if m.get("tools")), [])
        score = score_call(text, functions, reference)
        answers.append(
            {
                "prompt": messages[-1]["content"],
                "reference": json.dumps(reference, ensure_ascii=False),
                "answer": text,
                "rouge_l": float(score["correct"]),  # the side-by-side table's score column
                "stopped": bool(new and new[-1] in stop),
                "prompt_ids": ids,
                "answer_ids": new,
            }
            | score
        )
    return answers
