"""Chat service: an ONNX causal LM behind `POST /generate` and OpenAI's Chat Completions API under `/v1`
(`POST /v1/chat/completions` as JSON or server-sent events, `GET /v1/models`, `GET /v1/models/{id}`).

The model comes from the BentoML store (`model_tag` in bento_config.json, or `LLMPATH_CHAT_MODEL`): an optimum
ONNX export with KV cache plus its tokenizer, whose chat template renders every conversation. Message text is
tokenized as plain text (`encode_chat`), so a user cannot write the template's control tokens.

What the service does not implement is refused with a 400 naming the field, never silently dropped; every
error under `/v1` has OpenAI's shape, and `bentos/guard.py` (body size, body time, JSON only, queueing) sits in
front of everything."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    field_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime import OnnxCausalLM, encode_chat, sse_events, stream_text  # noqa: E402  (beside this file, in the repo and in the Bento)

try:
    import guard  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import guard

_CONFIG_FILE = HERE / "bento_config.json"
CONFIG = json.loads(_CONFIG_FILE.read_text()) if _CONFIG_FILE.exists() else {}
MODEL_TAG = os.environ.get("LLMPATH_CHAT_MODEL", CONFIG.get("model_tag", "llmpath-chat-onnx:latest"))
MODEL_ID = "llmpath-chat"
MAX_INPUT_TOKENS = int(CONFIG.get("max_input_tokens", 1024))
MAX_NEW_TOKENS = int(CONFIG.get("max_new_tokens", 256))
MAX_CHARS = int(CONFIG.get("max_chars", 8000))
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
    "tools": (None, []),
    "tool_choice": (None, "none"),
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


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str | list[TextPart], Field(description=f"text, or text parts; {MAX_CHARS} chars")]
    name: StrictStr | None = None  # OpenAI's participant name: accepted, not shown to the model
    # What clients echo back from an assistant turn: accepted when empty.
    tool_calls: list[dict] | None = None
    function_call: dict | None = None
    refusal: StrictStr | None = None
    audio: dict | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, value: Any) -> Any:
        if value in ("tool", "function"):
            raise ValueError(f"role '{value}' is not supported: this service has no tools")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        """Text parts joined with newlines; any other part type is refused by name."""
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

    @field_validator("tool_calls", "function_call", "refusal", "audio")
    @classmethod
    def _empty(cls, value: Any, info) -> Any:
        if value:
            raise ValueError(f"{info.field_name} is not supported by this service")
        return value

    def for_template(self) -> dict[str, str]:
        # The developer role is OpenAI's newer name for system instructions.
        return {"role": "system" if self.role == "developer" else self.role, "content": self.content}


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
    tools: list[dict] | None = None
    tool_choice: StrictStr | dict | None = None
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


app = FastAPI(title="llmpath chat (OpenAI-compatible)")


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


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    message = "; ".join(_describe(e) for e in errors[:3]) + (
        f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    )
    first = errors[0] if errors else {}
    return _error(400, message, _param(tuple(first.get("loc") or ())), first.get("type"))


@app.exception_handler(StarletteHTTPException)
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


@app.exception_handler(OpenAIError)
async def _refused(request: Request, exc: OpenAIError) -> JSONResponse:
    return _error(exc.status, exc.message, exc.param, exc.code)


@bentoml.service(
    name=CONFIG.get("name", "llmpath-chat"),
    traffic={"timeout": 300, "max_concurrency": 8},
    http={"host": CONFIG.get("host", "127.0.0.1"), "port": CONFIG.get("port", 3000)},
)
@bentoml.asgi_app(app, path="/v1")
class Chat:
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model.path)
        self.llm = OnnxCausalLM(self.model.path, file_name=self.model.info.metadata.get("file_name"))
        self.source = dict(self.model.info.labels)
        self.created = int(self.model.info.creation_time.timestamp())

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        ids = encode_chat(self.tokenizer, messages)
        if len(ids) > MAX_INPUT_TOKENS:
            raise OpenAIError(
                400,
                f"the conversation is {len(ids)} tokens; the limit is {MAX_INPUT_TOKENS}",
                "messages",
                "context_length_exceeded",
            )
        return ids

    def _complete(self, prompt: list[int], s: Sampling, rng: np.random.Generator) -> tuple[str, str, int]:
        text, finish, count = "", "stop", 0
        for piece, reason, tokens in self._pieces(prompt, s, rng):
            text, finish, count = text + piece, reason or finish, tokens
        return text, finish, count

    def _pieces(self, prompt: list[int], s: Sampling, rng: np.random.Generator):
        return stream_text(
            self.llm, self.tokenizer, prompt, s.max_tokens, s.stop, s.temperature, s.top_p, rng
        )

    @app.post("/chat/completions")
    def chat_completions(self, request: ChatRequest):
        """OpenAI chat completions: the conversation rendered with the model's chat template."""
        s = request.sampling()
        prompt = self._prompt([m.for_template() for m in request.messages])  # 400 before any work
        n, rng = request.n or 1, np.random.default_rng(s.seed)  # one generator: n answers differ
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": request.model,
        }
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            return StreamingResponse(
                sse_events(self._chunks(head, prompt, s, n, rng, usage)), media_type="text/event-stream"
            )
        choices, completion_tokens = [], 0
        for index in range(n):
            text, finish, count = self._complete(prompt, s, rng)
            completion_tokens += count
            message = {"role": "assistant", "content": text}
            choices.append({"index": index, "message": message, "finish_reason": finish})
        return head | {
            "object": "chat.completion",
            "choices": choices,
            "usage": _usage(len(prompt), completion_tokens),
        }

    def _chunks(self, head, prompt, s, n, rng, usage: bool) -> Iterator[dict]:
        """OpenAI's chunks: per answer a role delta, content deltas and a finish reason; with include_usage
        every chunk has `usage: null` and a last chunk with no choices carries the counts."""
        base = head | {"object": "chat.completion.chunk"} | ({"usage": None} if usage else {})
        completion_tokens = 0
        for index in range(n):
            first = {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            yield base | {"choices": [first]}
            for piece, reason, tokens in self._pieces(prompt, s, rng):
                delta = {"content": piece} if piece else {}
                yield base | {"choices": [{"index": index, "delta": delta, "finish_reason": reason}]}
                completion_tokens += tokens if reason else 0  # the last piece carries the count
        if usage:
            yield base | {"choices": [], "usage": _usage(len(prompt), completion_tokens)}

    @app.get("/models")
    def models(self):
        return {"object": "list", "data": [self._model_card()]}

    @app.get("/models/{model_id}")
    def model_card(self, model_id: str):
        if model_id != MODEL_ID:
            raise OpenAIError(404, f"The model '{model_id[:100]}' does not exist", "model", "model_not_found")
        return self._model_card()

    def _model_card(self) -> dict:
        return {"id": MODEL_ID, "object": "model", "created": self.created, "owned_by": "llmpath"}

    @bentoml.api(route="/generate")
    def generate(
        self,
        prompt: Annotated[StrictStr, Field(min_length=1, max_length=MAX_CHARS)],
        ctx: bentoml.Context,
        max_new_tokens: NewTokens = 128,
        temperature: Temperature = 0.0,
        top_p: TopP = 1.0,
        stop: Annotated[list[Stop], Field(max_length=4)] | None = None,
        seed: Seed | None = None,
    ) -> dict:
        """One user prompt, answered with the chat template applied."""
        try:
            ids = self._prompt([{"role": "user", "content": prompt}])
        except OpenAIError as refused:  # too long: refused before any generation
            ctx.response.status_code = refused.status
            return {"error": refused.message.replace("conversation", "prompt")}
        s = Sampling(
            max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop or [], seed=seed
        )
        text, finish, count = self._complete(ids, s, np.random.default_rng(seed))
        return {"text": text, "finish_reason": finish, "prompt_tokens": len(ids), "tokens": count}

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which model this server answers with."""
        return {"model_tag": str(self.model.tag), **self.source}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


guard.install(Chat, max_body_bytes=int(CONFIG.get("max_body_bytes", 1 << 20)))
