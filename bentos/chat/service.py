"""Chat service: an ONNX causal LM behind `POST /generate` and OpenAI's Chat Completions API under `/v1`
(`POST /v1/chat/completions` as JSON or server-sent events, `GET /v1/models`, `GET /v1/models/{id}`).

The model comes from the BentoML store (`model_tag` in bento_config.json, read as chat_config.py's ChatServe,
or `LLMPATH_CHAT_MODEL`): an optimum ONNX export with KV cache plus its tokenizer, whose chat template renders
every conversation. Message text is tokenized as plain text (`encode_chat`), so a user cannot write the
template's control tokens.

What the service does not implement is refused with a 400 naming the field, never silently dropped (the
protocol is in openai_api.py); `bentos/guard.py` (body size, body time, JSON only, queueing, JSON errors) sits
in front of everything. The chat page at `/ui` (chat_page.py) sends its turns to `/v1/chat/completions` like
any other client, so the same limits hold there."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import Field, StrictStr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Beside this file, in the repo and in the Bento:
import chat_page  # noqa: E402
import openai_api  # noqa: E402
from openai_api import (  # noqa: E402
    MODEL_ID,
    ChatRequest,
    NewTokens,
    OpenAIError,
    Sampling,
    Seed,
    Stop,
    Temperature,
    TopP,
    install_errors,
)
from runtime import OnnxCausalLM, encode_chat, encode_text, sse_events, stream_text  # noqa: E402
from tools import CallStream, Tools, flatten, openai_calls, parse_calls, template_has_tools  # noqa: E402

try:
    import guard  # in the Bento: copied beside this file at packaging
    import webui
    from chat_config import ChatServe
except ImportError:  # in the repo
    from bentos import guard, webui
    from bentos.chat.chat_config import ChatServe

# Written by the `package` stage into the Bento (defaults from source); LLMPATH_CHAT_MODEL overrides the model.
# (openai_api.py read the same file through the same schema to build its request types.)
CONFIG: ChatServe = openai_api.CONFIG
MAX_CHARS, MAX_INPUT_TOKENS = CONFIG.max_chars, CONFIG.max_input_tokens
app = install_errors(FastAPI(title="llmpath chat (OpenAI-compatible)"))


# The chat page at /ui: each turn is a request to /v1/chat/completions (bentos/webui.py).
@webui.mount(chat_page.build(CONFIG.max_new_tokens))
@bentoml.service(
    name=CONFIG.name,
    traffic={"timeout": 300, "max_concurrency": 8},
    http={"host": CONFIG.host, "port": CONFIG.port},
)
@bentoml.asgi_app(app, path="/v1")
class Chat:
    model = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model.path)
        self.llm = OnnxCausalLM(self.model.path, file_name=self.model.info.metadata.get("file_name"))
        self.source = dict(self.model.info.labels)
        self.created = int(self.model.info.creation_time.timestamp())
        self.native_tools = template_has_tools(self.tokenizer)

    def _prompt(self, messages: list[dict], tools: Tools | None = None) -> list[int]:
        """The conversation's prompt ids: tool turns and definitions rendered as tools.py does for training
        (the tools only when tool_choice is not "none"), then any text the answer is forced to start with."""
        if tools is None or not (
            tools.functions or any(m["role"] == "tool" or "tool_calls" in m for m in messages)
        ):
            ids = encode_chat(self.tokenizer, messages)
        else:
            flat, native = flatten(messages, tools.functions, self.native_tools)
            ids = encode_chat(self.tokenizer, flat, tools=native) + encode_text(self.tokenizer, tools.prefix)
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
        s, tools = request.sampling(), request.tool_setup()
        prompt = self._prompt([m.for_template() for m in request.messages], tools)  # 400 before any work
        n, rng = request.n or 1, np.random.default_rng(s.seed)  # one generator: n answers differ
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": request.model,
        }
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            chunks = self._chunks(head, prompt, s, n, rng, usage, tools)
            return StreamingResponse(sse_events(chunks), media_type="text/event-stream")
        choices, completion_tokens = [], 0
        for index in range(n):
            text, finish, count = self._complete(prompt, s, rng)
            completion_tokens += count
            message = {"role": "assistant", "content": text}
            if tools.functions:  # a call that does not parse or validate stays text (tools.parse_calls)
                parsed = parse_calls(tools.prefix + text, tools.functions)
                message["content"] = parsed.content if parsed.calls else tools.prefix + text
                if parsed.calls:
                    message["tool_calls"], finish = openai_calls(parsed.calls), "tool_calls"
            choices.append({"index": index, "message": message, "finish_reason": finish})
        return head | {
            "object": "chat.completion",
            "choices": choices,
            "usage": _usage(len(prompt), completion_tokens),
        }

    def _chunks(self, head, prompt, s, n, rng, usage: bool, tools: Tools) -> Iterator[dict]:
        """OpenAI's chunks: per answer a role delta, content deltas and a finish reason; with include_usage
        every chunk has `usage: null` and a last chunk with no choices carries the counts. With tools, text
        streams until a call begins; a valid call then arrives as `tool_calls` deltas (tools.CallStream)."""
        base = head | {"object": "chat.completion.chunk"} | ({"usage": None} if usage else {})
        completion_tokens = 0
        for index in range(n):
            first = {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            yield base | {"choices": [first]}
            calls = CallStream(tools.functions, tools.prefix) if tools.functions else None
            for piece, reason, tokens in self._pieces(prompt, s, rng):
                deltas = [{"content": piece}] if piece else []
                if calls is not None:
                    deltas = calls.feed(piece)
                    if reason:
                        last, reason = calls.finish(reason)
                        deltas += last
                for delta in deltas:
                    yield base | {"choices": [{"index": index, "delta": delta, "finish_reason": None}]}
                if reason:
                    yield base | {"choices": [{"index": index, "delta": {}, "finish_reason": reason}]}
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


guard.install(Chat, max_body_bytes=CONFIG.max_body_bytes, body_timeout_s=CONFIG.body_timeout_s)
