"""Tool calling for the chat Bento and the chat kind's data: one text form of tools, calls and results that
training renders and serving parses, so a model tuned on it calls tools the way the service reads them.

- Definitions go into the system prompt (`tools_prompt`) unless the tokenizer's chat template renders tools
  itself (`template_has_tools`: then they are passed to the template as `tools=`).
- An assistant's call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in its text, one block per
  call; a tool's result is a user turn `<tool_response>...</tool_response>` (every template has a user role).
- `parse_calls` reads a model's output back: each block must be JSON naming a known function, with arguments
  that validate against that function's `parameters` JSON Schema; anything else is returned as plain text with
  the reason, never an exception.
- `CallStream` turns text pieces into OpenAI chunk deltas: text before a call streams as content, a call is
  held until it is complete and valid and then sent as `tool_calls` deltas.

Pure Python and jsonschema: no model, no BentoML (the Bento and llmpath.chat both import it)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
MAX_TOOLS = 32
_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.DOTALL)


class ToolError(ValueError):
    """A tool definition or a call in a conversation that cannot be used; `param` names where it is."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


def _schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema for a function's parameters (None when it is)."""
    if not isinstance(schema, dict):
        return "must be a JSON Schema object"
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except Exception as err:  # SchemaError, or anything a hostile schema provokes: never a 500
        where = ".".join(str(p) for p in getattr(err, "path", ()) or ()) or "(top)"
        keyword = getattr(err, "validator", None) or type(err).__name__
        return f"is not a valid JSON Schema (at {where}: {keyword})"
    return None


def function_of(tool: Any, where: str) -> dict[str, Any]:
    """One tool as {name, description, parameters}: OpenAI's `{"type": "function", "function": {...}}` or the
    bare function object data files hold (glaive's `tools`). Raises ToolError naming the field."""
    if not isinstance(tool, dict):
        raise ToolError(where, "must be an object")
    if "function" in tool or "type" in tool:
        if tool.get("type") != "function":
            raise ToolError(f"{where}.type", "only 'function' tools are supported")
        if set(tool) - {"type", "function"}:
            raise ToolError(where, "a tool has only 'type' and 'function'")
        tool, where = tool.get("function"), f"{where}.function"
        if not isinstance(tool, dict):
            raise ToolError(where, "must be an object")
    extra = set(tool) - {"name", "description", "parameters", "strict"}
    if extra:
        raise ToolError(
            where, f"unknown key(s) {sorted(extra)[:5]}; a function has name, description, parameters"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ToolError(f"{where}.name", "must be 1-64 letters, digits, '_' or '-'")
    description = tool.get("description", "")
    if not isinstance(description, str):
        raise ToolError(f"{where}.description", "must be a string")
    parameters = tool.get("parameters", {"type": "object", "properties": {}})
    problem = _schema_problem(parameters)
    if problem:
        raise ToolError(f"{where}.parameters", problem)
    return {"name": name, "description": description, "parameters": parameters}


def check_tools(tools: Any, where: str = "tools") -> list[dict[str, Any]]:
    """A list of tools as functions, names unique; ToolError otherwise."""
    if not isinstance(tools, list):
        raise ToolError(where, "must be a list of tools")
    if len(tools) > MAX_TOOLS:
        raise ToolError(where, f"{len(tools)} tools; the limit is {MAX_TOOLS}")
    functions = [function_of(t, f"{where}[{i}]") for i, t in enumerate(tools)]
    names = [f["name"] for f in functions]
    for i, name in enumerate(names):
        if name in names[:i]:
            # the name's own path: `function.name` in OpenAI's shape, `name` in the flat one
            nested = isinstance(tools[i], dict) and "function" in tools[i]
            path = f"{where}[{i}].function.name" if nested else f"{where}[{i}].name"
            raise ToolError(path, "duplicates an earlier tool's name")
    return functions


@dataclass
class Tools:
    """What a request's tools and tool_choice ask for: the functions offered (none: tools off, no call is
    parsed) and the text the answer is forced to start with ("required", or a named function)."""

    functions: list[dict[str, Any]] = field(default_factory=list)
    prefix: str = ""


def choose(tools: Any, tool_choice: Any) -> Tools:
    """OpenAI's `tools` and `tool_choice` ("none", "auto", "required", {"type": "function", "function":
    {"name": ...}}; default auto with tools, none without) as Tools; ToolError naming the field otherwise."""
    functions = check_tools(tools) if tools else []
    choice = tool_choice if tool_choice is not None else ("auto" if functions else "none")
    if choice == "none":
        return Tools()  # the tools stay out of the prompt and nothing is parsed
    if not functions:
        raise ToolError("tool_choice", "needs tools: send tools, or omit tool_choice")
    if choice in ("auto", "required"):
        return Tools(functions, CALL_OPEN if choice == "required" else "")
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str):
        shape = '"none", "auto", "required" or {"type": "function", "function": {"name": ...}}'
        raise ToolError("tool_choice", f"must be {shape}")
    named = [f for f in functions if f["name"] == name]
    if not named:
        raise ToolError("tool_choice", "names a function that is not in tools")
    # Ends before the space: BPE joins it to the next token (' {"'), as the call text was tokenized.
    return Tools(named, f'{CALL_OPEN}{{"name": {json.dumps(name)}, "arguments":')


def template_has_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders tool definitions itself (it reads a `tools` variable)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates
        template = template.get("tool_use") or template.get("default") or ""
    return bool(re.search(r"\btools\b", str(template)))


def tools_prompt(functions: list[dict[str, Any]]) -> str:
    """The tool definitions as system-prompt text, with how to call one."""
    lines = "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)
    return (
        f"You can call these functions:\n<tools>\n{lines}\n</tools>\n"
        f'To call one, reply with {CALL_OPEN}{{"name": <name>, "arguments": <object>}}{CALL_CLOSE}'
    )


def call_text(calls: list[dict[str, Any]]) -> str:
    """Calls ({name, arguments}; arguments an object or its JSON text) as the assistant's text."""
    blocks = []
    for call in calls:
        arguments = call["arguments"]
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
        body = json.dumps({"name": call["name"], "arguments": arguments}, ensure_ascii=False)
        blocks.append(f"{CALL_OPEN}{body}{CALL_CLOSE}")
    return "\n".join(blocks)


def flatten(
    messages: list[dict[str, Any]], functions: list[dict[str, Any]] | None, native: bool = False
) -> tuple[list[dict[str, str]], list[dict[str, Any]] | None]:
    """Messages with tool calls (`tool_calls` on assistant turns) and `tool` turns as plain role/content
    messages any chat template renders, and the tools to pass to the template (`native`) or None (then they
    are in the system prompt). Consecutive tool results become one user turn."""
    out: list[dict[str, str]] = []
    pending: list[str] = []

    def results() -> None:
        if pending:
            body = "\n".join(f"{RESPONSE_OPEN}{text}{RESPONSE_CLOSE}" for text in pending)
            out.append({"role": "user", "content": body})
            pending.clear()

    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool":
            pending.append(content)
            continue
        results()
        if role == "assistant" and message.get("tool_calls"):
            calls = call_text(message["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": role, "content": content})
    results()
    if functions and not native:
        prompt = tools_prompt(functions)
        if out and out[0]["role"] == "system":
            system = out[0]["content"]
            out[0] = {"role": "system", "content": f"{system}\n\n{prompt}" if system else prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out, (functions or None) if native else None


@dataclass
class Parsed:
    """A model's output read for calls: `calls` ({id, name, arguments as JSON text}) when every block is a
    valid call, else none and the whole text as `content` with the `problem`."""

    content: str | None
    calls: list[dict[str, str]] = field(default_factory=list)
    problem: str | None = None


def validate_arguments(arguments: Any, schema: dict[str, Any]) -> str | None:
    """Why `arguments` do not satisfy `schema` (the field's path and the failing keyword), or None."""
    try:
        validator = validator_for(schema, default=Draft202012Validator)(schema)
        error = best_match(validator.iter_errors(arguments))
    except Exception:  # an unresolvable $ref, a recursion bomb: the call is unusable, not the server
        return "the function's parameters schema could not be applied"
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "(top)"
    return f"arguments do not match the parameters schema at {where} ({error.validator})"


def _read_call(body: str, functions: dict[str, dict]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return None, "a tool call is not valid JSON"
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None, "a tool call is not an object with a name"
    if call["name"] not in functions:
        return None, "a tool call names a function that was not offered"
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as JSON text, as OpenAI sends them
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return None, "a tool call's arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return None, "a tool call's arguments are not an object"
    problem = validate_arguments(arguments, functions[call["name"]]["parameters"])
    return ({"name": call["name"], "arguments": arguments}, None) if problem is None else (None, problem)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_calls(text: str, functions: list[dict[str, Any]]) -> Parsed:
    """Read the calls in a model's output. Text before the first call is the content (None when blank);
    text after the calls is dropped. One unusable block makes the whole output plain text."""
    start = text.find(CALL_OPEN)
    if start < 0:
        return Parsed(text)
    by_name = {f["name"]: f for f in functions}
    calls = []
    blocks = list(_BLOCK.finditer(text, start))
    if not blocks or CALL_OPEN in text[blocks[-1].end() :]:
        return Parsed(text, problem="a tool call is not closed")
    for block in blocks:
        call, problem = _read_call(block.group(1).strip(), by_name)
        if problem:
            return Parsed(text, problem=problem)
        arguments = json.dumps(call["arguments"], ensure_ascii=False)
        calls.append({"id": new_call_id(), "name": call["name"], "arguments": arguments})
    content = text[:start]
    return Parsed(content if content.strip() else None, calls)


def openai_calls(calls: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Parsed calls as an OpenAI message's `tool_calls`."""
    return [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls
    ]


def _held_back(text: str, marker: str) -> int:
    """How many trailing characters of `text` might begin `marker`."""
    return max((k for k in range(1, len(marker)) if text.endswith(marker[:k])), default=0)


class CallStream:
    """Streaming: `feed` each text piece and send the content deltas it returns; `finish` returns the last
    deltas (the calls, or held text) and the finish reason. Content is sent as soon as it cannot be the start
    of a call; blank text is held until something follows it, so the streamed content equals the JSON
    answer's content. `prefix` is text the prompt already forced the answer to start with."""

    def __init__(self, functions: list[dict[str, Any]], prefix: str = ""):
        self.functions, self.text, self.sent = functions, prefix, 0
        self.inside = CALL_OPEN in prefix

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        if self.inside:
            return []
        start = self.text.find(CALL_OPEN, self.sent)
        if start >= 0:
            self.inside = True
            end = start
        else:
            end = len(self.text) - _held_back(self.text, CALL_OPEN)
        ready = self.text[self.sent : end]
        if not ready or not self.text[:end].strip():
            return []
        self.sent = end
        return [{"content": ready}]

    def finish(self, reason: str) -> tuple[list[dict[str, Any]], str]:
        parsed = parse_calls(self.text, self.functions)
        if not parsed.calls:
            rest = self.text[self.sent :]
            return ([{"content": rest}] if rest else []), reason
        deltas = []
        for i, call in enumerate(parsed.calls):
            head = {"index": i, "id": call["id"], "type": "function"}
            deltas.append({"tool_calls": [head | {"function": {"name": call["name"], "arguments": ""}}]})
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": call["arguments"]}}]})
        return deltas, "tool_calls"
