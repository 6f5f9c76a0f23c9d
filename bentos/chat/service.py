"""Chat service (toward issue 4): an ONNX causal LM behind `POST /generate` and an OpenAI-compatible
`POST /v1/chat/completions` (JSON, or server-sent events with `"stream": true`).

The model comes from the BentoML store (`model_tag` in bento_config.json, or `LLMPATH_CHAT_MODEL`): an optimum
ONNX export with KV cache plus its tokenizer, whose chat template renders every conversation."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import bentoml
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime import OnnxCausalLM  # noqa: E402  (beside this file, in the repo and in the Bento)

_CONFIG_FILE = HERE / "bento_config.json"
CONFIG = json.loads(_CONFIG_FILE.read_text()) if _CONFIG_FILE.exists() else {}
MODEL_TAG = os.environ.get("LLMPATH_CHAT_MODEL", CONFIG.get("model_tag", "llmpath-chat-onnx:latest"))
MAX_INPUT_TOKENS = int(CONFIG.get("max_input_tokens", 1024))
MAX_NEW_TOKENS = int(CONFIG.get("max_new_tokens", 256))
MAX_CHARS = int(CONFIG.get("max_chars", 8000))


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_CHARS)]


Stop = Annotated[str, Field(min_length=1, max_length=64)]


class Sampling(BaseModel):
    max_tokens: int = Field(128, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = None
    seed: int | None = None


class ChatRequest(Sampling):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (n, user, ...)
    model: str = "llmpath-chat"
    messages: Annotated[list[Message], Field(min_length=1, max_length=64)]
    stream: bool = False


app = FastAPI(title="llmpath chat (OpenAI-compatible)")


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might be the start of a stop string (not sent until we know)."""
    return max((k for stop in stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)


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

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
        if len(ids) > MAX_INPUT_TOKENS:
            raise HTTPException(
                400, f"the conversation is {len(ids)} tokens; the limit is {MAX_INPUT_TOKENS}"
            )
        return ids

    def _pieces(self, prompt: list[int], s: Sampling) -> Iterator[tuple[str, str | None]]:
        """(new text, finish reason or None) as tokens arrive; stop strings end the answer early."""
        stops = [s.stop] if isinstance(s.stop, str) else list(s.stop or [])
        tokens: list[int] = []
        sent = ""
        for token in self.llm.stream(
            prompt, s.max_tokens, [self.tokenizer.eos_token_id], s.temperature, s.top_p, s.seed
        ):
            tokens.append(token)
            text, stopped = _cut(self.tokenizer.decode(tokens, skip_special_tokens=True), stops)
            if text.endswith("\ufffd") and not stopped:
                continue  # half of a multi-byte character: wait for the rest
            ready = text if stopped else text[: len(text) - _held_back(text, stops)]
            if len(ready) > len(sent):
                yield ready[len(sent) :], None
                sent = ready
            if stopped:
                yield "", "stop"
                return
        text = _cut(self.tokenizer.decode(tokens, skip_special_tokens=True), stops)[0]
        if len(text) > len(sent):  # what was held back for a stop string that never came
            yield text[len(sent) :], None
        yield "", "length" if len(tokens) >= s.max_tokens else "stop"

    def _complete(self, messages: list[dict[str, str]], s: Sampling) -> tuple[str, str, int, int]:
        prompt = self._prompt(messages)
        text, finish = "", "stop"
        for piece, reason in self._pieces(prompt, s):
            text += piece
            finish = reason or finish
        completion_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return text, finish, len(prompt), completion_tokens

    @app.post("/chat/completions")
    def chat_completions(self, request: ChatRequest):
        """OpenAI chat completions: the conversation rendered with the model's chat template."""
        messages = [m.model_dump() for m in request.messages]
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": ident, "created": created, "model": request.model}
        if request.stream:
            prompt = self._prompt(messages)  # a too-long conversation is a 400 before the stream starts

            def events() -> Iterator[str]:
                first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                yield _sse(head | {"object": "chat.completion.chunk", "choices": [first]})
                for piece, reason in self._pieces(prompt, request):
                    delta = {"content": piece} if piece else {}
                    choice = {"index": 0, "delta": delta, "finish_reason": reason}
                    yield _sse(head | {"object": "chat.completion.chunk", "choices": [choice]})
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        text, finish, prompt_tokens, completion_tokens = self._complete(messages, request)
        return head | {
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @app.get("/models")
    def models(self):
        return {"object": "list", "data": [{"id": "llmpath-chat", "object": "model", "owned_by": "llmpath"}]}

    @bentoml.api(route="/generate")
    def generate(
        self,
        prompt: Annotated[str, Field(min_length=1, max_length=MAX_CHARS)],
        max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)] = 128,
        temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0,
        top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0,
        stop: Annotated[list[Stop], Field(max_length=4)] | None = None,
    ) -> dict:
        """One user prompt, answered with the chat template applied."""
        s = Sampling(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop)
        text, finish, prompt_tokens, completion_tokens = self._complete(
            [{"role": "user", "content": prompt}], s
        )
        return {
            "text": text,
            "finish_reason": finish,
            "prompt_tokens": prompt_tokens,
            "tokens": completion_tokens,
        }

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which model this server answers with."""
        return {"model_tag": str(self.model.tag), **self.source}


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
