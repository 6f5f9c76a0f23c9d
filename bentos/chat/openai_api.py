"""OpenAI's Chat Completions protocol as the chat Bento implements it: the request schema with its limits, what
is accepted only at its no-op value, and errors in OpenAI's shape (`{"error": {message, type, param, code}}`).
Tools: `tools`, `tool_choice`, assistant `tool_calls` and `tool` messages (rendering and parsing: tools.py).

Pure pydantic and FastAPI: no model, no BentoML. The limits come from the Bento's typed serve config
(bento_config.json beside this file, read as chat_config.py's ChatServe: one schema, one set of defaults)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

try:
    import serve_config  # in the Bento: copied beside this file at packaging
    import tools as toolkit
    from chat_config import ChatServe
except ImportError:  # in the repo
    from bentos import serve_config
    from bentos.chat import tools as toolkit
    from bentos.chat.chat_config import ChatServe

HERE = Path(__file__).resolve().parent
CONFIG = serve_config.read(HERE, ChatServe)
MODEL_ID = "llmpath-chat"
MAX_INPUT_TOKENS = CONFIG.max_input_tokens
MAX_NEW_TOKENS = CONFIG.max_new_tokens
MAX_CHARS = CONFIG.max_chars
MAX_N = 4  # answers per request: each is a full generation
MAX_SEED = 2**32 - 1  # numpy's seed range

Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # a JSON number; NaN and Infinity refused
Temperature = Annotated[Finite, Field(ge=0.0, le=2.0, description="0 (or below 1e-4) is greedy")]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


# Not `gt=0`: BentoML's schema is OpenAPI 3.0, where pydantic's numeric `exclusiveMinimum` is invalid.
TopP = Annotated[Finite, Field(ge=0.0, le=1.0), AfterValidator(_positive)]
Stop = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Seed = Annotated[int, Strict(), Field(ge=0, le=MAX_SEED, description="0 to 2**32-1")]
NewTokens = Annotated[int, Strict(), Field(ge=1, le=MAX_NEW_TOKENS)]

# OpenAI fields the service accepts only at their no-op value: anything else is a 400 naming the field.
NO_OP = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
    "verbosity": (None,),
    "store": (None, False),
    "service_tier": (None, "auto", "default"),
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


class TextPart(BaseModel):
    type: Literal["text"]
    text: StrictStr


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone UTF-16 surrogate ("\ud800" in JSON): not a character at all
        return False
    return True


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[StrictStr, Field(pattern=toolkit.NAME.pattern)]
    arguments: Annotated[StrictStr, Field(max_length=MAX_CHARS, description="a JSON object, as text")]

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError("is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return value


class ToolCall(BaseModel):
    """A call an assistant turn made (clients send it back with the tool's result)."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    type: Literal["function"]
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[
        str | list[TextPart] | None, Field(description=f"text, or text parts; {MAX_CHARS} chars")
    ]  # null (or left out) only on an assistant turn with tool_calls
    name: StrictStr | None = None  # OpenAI's participant name: accepted, not shown to the model
    tool_calls: Annotated[list[ToolCall], Field(max_length=toolkit.MAX_TOOLS)] | None = None  # assistant
    tool_call_id: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None  # tool results
    # What clients echo back from an assistant turn: accepted when empty.
    function_call: dict | None = None
    refusal: StrictStr | None = None
    audio: dict | None = None
    annotations: list[dict] | None = None

    @model_validator(mode="before")
    @classmethod
    def _call_without_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "content" not in data and data.get("tool_calls"):
            return data | {"content": None}
        return data

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, value: Any) -> Any:
        if value == "function":
            raise ValueError("role 'function' is OpenAI's deprecated form: send 'tool' messages")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _as_text(cls, value: Any, info) -> str | None:
        """Text parts joined with newlines; any other part type is refused by name."""
        if value is None and info.data.get("role") == "assistant":
            return value  # a call without text: checked against tool_calls below
        if isinstance(value, list):
            texts = []
            for i, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    shown = f"type {str(kind)[:40]!r}" if kind is not None else "without a type"
                    raise ValueError(f"content part {i} is {shown}; only 'text' parts are supported")
                if not isinstance(part.get("text"), str) or set(part) - {"type", "text"}:
                    raise ValueError(f"content part {i} must be {{'type': 'text', 'text': <string>}}")
                texts.append(part["text"])
            value = "\n".join(texts)
        if not isinstance(value, str):
            raise ValueError("must be a string or a list of text parts")
        if not _is_unicode(value):
            raise ValueError("is not valid Unicode text (it holds a lone UTF-16 surrogate)")
        if len(value) > MAX_CHARS:
            raise ValueError(f"is {len(value)} characters; the limit is {MAX_CHARS}")
        return value

    @field_validator("function_call", "refusal", "audio", "annotations")
    @classmethod
    def _empty(cls, value: Any, info) -> Any:
        if value:
            raise ValueError(f"{info.field_name} is not supported by this service")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("tool messages, and only they, need a tool_call_id")
        if self.content is None and not self.tool_calls:
            raise ValueError("content may be null only on an assistant turn with tool_calls")
        return self

    def for_template(self) -> dict[str, Any]:
        # The developer role is OpenAI's newer name for system instructions.
        message = {"role": "system" if self.role == "developer" else self.role, "content": self.content or ""}
        if self.tool_calls:
            message["tool_calls"] = [
                {"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                for c in self.tool_calls
            ]
        return message


class Sampling(BaseModel):
    max_tokens: int = Field(128, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = []
    seed: int | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False
    include_obfuscation: StrictBool = False  # padding against length side channels; nothing to pad here


class ChatRequest(BaseModel):
    """OpenAI's chat completion request: what the service implements, and the rest at its no-op value."""

    model_config = ConfigDict(extra="forbid")  # as OpenAI: an unknown argument is a 400, not ignored
    model: StrictStr = MODEL_ID
    messages: Annotated[list[Message], Field(min_length=1, max_length=64)]
    max_completion_tokens: NewTokens | None = None
    max_tokens: NewTokens | None = Field(None, description="older name of max_completion_tokens")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[int, Strict(), Field(ge=1, le=MAX_N)] | None = None
    stop: Annotated[list[Stop], Field(max_length=4, description="up to 4 strings, or one string")] | None = (
        None
    )
    seed: Seed | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    metadata: dict[StrictStr, StrictStr] | None = None
    parallel_tool_calls: StrictBool | None = None
    frequency_penalty: Finite | None = None
    presence_penalty: Finite | None = None
    logit_bias: dict[StrictStr, Finite] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Strict()] | None = None
    tools: Annotated[list[dict], Field(max_length=toolkit.MAX_TOOLS)] | None = None
    tool_choice: StrictStr | dict | None = Field(
        None, description="none, auto, required, or a named function"
    )
    functions: list[dict] | None = None
    function_call: StrictStr | dict | None = None
    response_format: dict | None = None
    modalities: list[StrictStr] | None = None
    audio: dict | None = None
    prediction: dict | None = None
    reasoning_effort: StrictStr | None = None
    web_search_options: dict | None = None
    verbosity: StrictStr | None = None
    store: StrictBool | None = None
    service_tier: StrictStr | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # OpenAI takes one string or a list

    @field_validator(*NO_OP)
    @classmethod
    def _no_op(cls, value: Any, info) -> Any:
        allowed = NO_OP[info.field_name]
        if not any(value == a and type(value) is type(a) for a in allowed):
            shown = " or ".join(json.dumps(a) for a in allowed if a is not None) or "null"
            raise ValueError(f"{info.field_name} is not supported by this service; omit it or send {shown}")
        return value

    @field_validator("messages")
    @classmethod
    def _results_follow_calls(cls, messages: list[Message]) -> list[Message]:
        """Each tool message answers a call of the assistant turn before it (or before earlier results)."""
        ids: set[str] = set()
        for i, message in enumerate(messages):
            if message.role == "tool":
                if message.tool_call_id not in ids:
                    raise ValueError(f"messages[{i}] answers no tool call of the assistant turn before it")
                ids.discard(message.tool_call_id)
            else:
                ids = {c.id for c in message.tool_calls or ()}
        return messages

    def tool_setup(self) -> toolkit.Tools:
        """What the tools and tool_choice ask for (tools.choose); a 400 naming the field for anything else."""
        try:
            return toolkit.choose(self.tools, self.tool_choice)
        except toolkit.ToolError as err:
            raise OpenAIError(400, str(err), err.param) from None

    def sampling(self) -> Sampling:
        if None not in (self.max_tokens, self.max_completion_tokens) and (
            self.max_tokens != self.max_completion_tokens
        ):
            raise OpenAIError(
                400, "max_tokens and max_completion_tokens disagree; send one", "max_completion_tokens"
            )
        if self.stream_options is not None and not self.stream:
            raise OpenAIError(400, "stream_options is only allowed when stream is true", "stream_options")
        return Sampling(
            max_tokens=self.max_completion_tokens or self.max_tokens or 128,
            temperature=0.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=list(self.stop or []),
            seed=self.seed,
        )


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = code or ("server_error" if status >= 500 else "invalid_value")
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


UNION_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list"})


def _param(loc: tuple) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, str) and (part in UNION_TAGS or not part.isidentifier()):
            continue  # pydantic names the union member it tried ('str', 'list[...]'): not a field
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _describe(err: dict) -> str:
    """One pydantic error as a sentence naming the field; never the value sent (it may be NaN, or huge)."""
    param, kind = _param(tuple(err.get("loc") or ())), err.get("type")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    if param is None:
        if kind == "missing":
            return "the request body is empty: send a JSON object with `messages`"
        return "the request body must be a JSON object"
    if kind == "missing":
        return f"{param} is required"
    if kind == "string_unicode":
        return f"{param} is not valid Unicode text (it holds a lone UTF-16 surrogate)"
    return f"{param}: {msg}"


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    message = "; ".join(_describe(e) for e in errors[:3]) + (
        f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    )
    first = errors[0] if errors else {}
    return _error(400, message, _param(tuple(first.get("loc") or ())), first.get("type"))


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error(
        exc.status_code, message, None, {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
    )


async def _refused(request: Request, exc: OpenAIError) -> JSONResponse:
    return _error(exc.status, exc.message, exc.param, exc.code)


def install_errors(app: FastAPI) -> FastAPI:
    """Every error `app` raises (validation, routing, refusals) as an OpenAI error with status 400/404/405,
    never FastAPI's 422 `detail`."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(OpenAIError, _refused)
    return app
