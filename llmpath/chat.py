"""Instruction and chat data: rows in Alpaca, `messages` or ShareGPT `conversations` form become validated
conversations, rendered with the model's own chat template, with labels on assistant tokens only.

This is the data half of the chat recipe: the recipe section, the flow and its stages build on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from llmpath.data import RowIssue, ValidationReport

Format = Literal["auto", "alpaca", "messages", "sharegpt"]
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",  # glaive/LLaMA-Factory: the assistant's call, {"name", "arguments"} as JSON
    "observation": "tool",  # the tool's result
}
IGNORE = -100  # label of a token the loss does not count


@dataclass(frozen=True)
class ChatColumns:
    """Which columns hold what. `format="auto"` picks by the columns a row has."""

    format: Format = "auto"
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    system: str = "system"
    messages: str = "messages"
    conversations: str = "conversations"
    tools: str = "tools"


def detect_format(row: dict[str, Any], cols: ChatColumns) -> str | None:
    if cols.format != "auto":
        return cols.format
    if cols.messages in row:
        return "messages"
    if cols.conversations in row:
        return "sharegpt"
    if cols.instruction in row or cols.output in row:
        return "alpaca"
    return None


def _text(row: dict[str, Any], column: str, required: bool) -> tuple[str | None, str | None]:
    """(value, problem) of a text column: missing, wrong type and (when required) empty are problems."""
    if column not in row or row[column] is None:
        return None, "missing" if required else None
    value = row[column]
    if not isinstance(value, str):
        return None, f"wrong type: expected text, got {type(value).__name__}"
    if required and not value.strip():
        return None, "empty text"
    return value, None


def _alpaca(row: dict[str, Any], cols: ChatColumns) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    fields = [(cols.instruction, True), (cols.input, False), (cols.output, True), (cols.system, False)]
    checked = [
        (column, *_text(row, column, required)) for column, required in fields
    ]  # (column, value, problem)
    problems = [(column, problem) for column, _, problem in checked if problem]
    if problems:
        return [], problems
    instruction, extra, output, system = (value for _, value, _ in checked)
    user = instruction.strip() + (f"\n\n{extra.strip()}" if extra and extra.strip() else "")
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output}], []


def _turns(row: dict[str, Any], column: str, role_key: str, text_key: str, role_map: dict[str, str]):
    turns = row.get(column)
    if turns is None:
        return [], [(column, "missing")]
    if not isinstance(turns, list) or not turns:
        return [], [(column, "wrong type: expected a non-empty list of turns")]
    messages, problems = [], []
    for i, turn in enumerate(turns):
        where = f"{column}[{i}]"
        if not isinstance(turn, dict):
            problems.append((where, f"wrong type: expected an object, got {type(turn).__name__}"))
            continue
        role = turn.get(role_key)
        if not isinstance(role, str) or role not in role_map:
            # Described, not quoted: a row's fields are file content.
            got = (
                ""
                if isinstance(role, str)
                else " (missing)"
                if role is None
                else f" (a {type(role).__name__})"
            )
            problems.append((f"{where}.{role_key}", f"bad role{got}: expected one of {sorted(role_map)}"))
            continue
        content, p = _text(turn, text_key, True)
        if p:
            problems.append((f"{where}.{text_key}", p))
            continue
        if role == "function_call":
            calls, p = _calls(content)
            if p:
                problems.append((f"{where}.{text_key}", p))
                continue
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
            continue
        messages.append({"role": role_map[role], "content": content})
    return messages, problems


def _calls(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """A function_call turn's calls: one {"name", "arguments"} object (or a list of them) as JSON text."""
    try:
        value = json.loads(text)
    except ValueError:
        return [], "a function call that is not valid JSON"
    calls = value if isinstance(value, list) else [value]
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return [], "a function call without a name"
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return [], "a function call whose arguments are not valid JSON"
        if not isinstance(arguments, dict):
            return [], "a function call whose arguments are not an object"
        call["arguments"] = arguments
    return [{"name": c["name"], "arguments": c["arguments"]} for c in calls], None


def _tools(row: dict[str, Any], cols: ChatColumns, messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The row's tool definitions (a list, or its JSON text) checked and put on its first message; every call
    must name one of them, with arguments its parameters schema accepts."""
    from bentos.chat.tools import ToolError, check_tools, validate_arguments

    value = row.get(cols.tools)
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            return [(cols.tools, "not valid JSON")]
    functions = []
    if value:
        try:
            functions = check_tools(value, cols.tools)
        except ToolError as err:
            return [(err.param, err.message)]
        messages[0]["tools"] = functions
    by_name = {f["name"]: f for f in functions}
    for i, message in enumerate(messages):
        for call in message.get("tool_calls") or []:
            if call["name"] not in by_name:
                return [(f"{cols.conversations}[{i}]", "a function call names no tool of the row's tools")]
            if validate_arguments(call["arguments"], by_name[call["name"]]["parameters"]):
                return [(f"{cols.conversations}[{i}]", "a function call's arguments fail its tool's schema")]
    return []


def _order_problems(messages: list[dict[str, str]], column: str) -> list[tuple[str, str]]:
    """System only first; user and assistant alternate, starting with user; at least one assistant turn."""
    roles = [m["role"] for m in messages]
    for i, role in enumerate(roles):
        if role == "tool" and not (i and (messages[i - 1].get("tool_calls") or roles[i - 1] == "tool")):
            return [(column, "bad role order: a tool result must follow a function call")]
    roles = ["user" if r == "tool" else r for r in roles]  # a result answers the call, as a user turn would
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        return [(column, "bad role order: a system turn may only come first")]
    if not body or body[0] != "user":
        return [(column, "bad role order: the conversation must start with a user turn")]
    if any(a == b for a, b in zip(body, body[1:], strict=False)):
        return [(column, "bad role order: user and assistant turns must alternate")]
    if "assistant" not in body:
        return [(column, "no assistant turn to learn from")]
    return []


def to_messages(row: dict[str, Any], cols: ChatColumns) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """One row as chat messages, or the (field, problem) pairs that make it unusable."""
    fmt = detect_format(row, cols)
    if fmt == "alpaca":
        return _alpaca(row, cols)
    if fmt == "messages":
        messages, problems = _turns(row, cols.messages, "role", "content", {r: r for r in ROLES})
        column = cols.messages
    elif fmt == "sharegpt":
        messages, problems = _turns(row, cols.conversations, "from", "value", SHAREGPT_ROLES)
        column = cols.conversations
        if not problems and (cols.tools in row or any(m.get("tool_calls") for m in messages)):
            problems = _tools(row, cols, messages)
    else:
        wanted = f"{cols.instruction}/{cols.output}, {cols.messages} or {cols.conversations}"
        return [], [("(row)", f"missing: none of the columns {wanted}")]
    if problems:
        return [], problems
    return messages, _order_problems(messages, column)


class ChatReport(ValidationReport):
    """What validation kept (conversations as message lists) and why it dropped the rest (by file, row, field)."""


def validate_conversations(rows: list[dict[str, Any]], cols: ChatColumns, file: str) -> ChatReport:
    report = ChatReport(file=file, rows=len(rows))
    seen: dict[str, int] = {}  # conversation -> first row
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            report.issues.append(RowIssue(file, number, "(row)", "wrong type: expected an object"))
            continue
        messages, problems = to_messages(row, cols)
        if problems:
            report.issues += [RowIssue(file, number, where, problem) for where, problem in problems]
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in seen:
            report.duplicates += 1
            report.issues.append(RowIssue(file, number, "(row)", f"duplicate: same as row {seen[key]}"))
            continue
        seen[key] = number
        report.kept.append(messages)
    return report


@dataclass(frozen=True)
class Rendered:
    input_ids: list[int]
    labels: list[int]  # IGNORE except on assistant tokens (content and end-of-turn)
    truncated: bool


class TemplateError(ValueError):
    """The tokenizer's chat template cannot be split into turns (rendering a prefix changes earlier tokens)."""


def _ids(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    """The conversation in the chat template with message text as plain text, exactly as the chat Bento
    encodes a request: a row whose text holds `<|im_end|>` trains on those characters, not on a control token."""
    from bentos.chat.runtime import encode_chat
    from bentos.chat.tools import flatten, template_has_tools

    functions = next((m["tools"] for m in messages if m.get("tools")), None)
    if functions or any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        messages, native = flatten(messages, functions, template_has_tools(tokenizer))
        return encode_chat(tokenizer, messages, add_generation_prompt=generation_prompt, tools=native)
    return encode_chat(tokenizer, messages, add_generation_prompt=generation_prompt)


def render(
    tokenizer,
    messages: list[dict[str, str]],
    max_length: int,
    overflow: Literal["truncate", "drop"] = "truncate",
) -> Rendered | None:
    """Token ids of the whole conversation in the model's chat template, with labels on the tokens of each
    assistant turn only (its content and the end-of-turn token, so the model learns to stop). Over-long
    conversations are cut at `max_length` or dropped (None); one with no assistant token left is dropped too."""
    ids = _ids(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _ids(tokenizer, messages[:i], generation_prompt=True)  # ... up to "<assistant header>"
        turn = _ids(tokenizer, messages[: i + 1], generation_prompt=False)  # ... through this answer's end
        if turn[: len(prompt)] != prompt or ids[: len(turn)] != turn:
            raise TemplateError("the chat template renders a turn differently once later turns follow it")
        labels[len(prompt) : len(turn)] = ids[len(prompt) : len(turn)]
    truncated = len(ids) > max_length
    if truncated:
        if overflow == "drop":
            return None
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return Rendered(ids, labels, truncated)


def pad_batch(items: list[Rendered], pad_id: int):
    """Right-padded tensors for a causal LM: input_ids, attention_mask, and labels with padding ignored."""
    import torch

    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The conversation so far, ending with the assistant header: what generation continues from."""
    return _ids(tokenizer, messages, generation_prompt=True)
