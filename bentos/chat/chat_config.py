"""The chat Bento's serve config: `ChatSettings` (the `serve` section of every causal-LM recipe) and
`ChatServe` (what its service and openai_api.py read: those settings plus the model tag packaging fills in).

Beside service.py in the repo and in the Bento, so only the kinds that serve with this Bento carry it in their
code version. Pydantic and the shared base (serve_config.py) only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

try:
    import serve_config  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import serve_config


class ChatSettings(serve_config.ServeSettings):
    """The OpenAI-style chat Bento (POST /generate and /v1)."""

    bento_name: str = Field(
        "llmpath-chat",
        pattern=serve_config.NAME,
        description="The Bento's name (`llmpath serve` finds it by it).",
    )
    max_chars: int = Field(8000, gt=0, description="Characters per prompt or message.")
    max_input_tokens: int = Field(1024, gt=0, description="Longer conversations get a 400.")
    max_new_tokens: int = Field(256, gt=0, description="The cap on a request's max_tokens.")


class ChatServe(ChatSettings, serve_config.BaseServe):
    """The chat Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {"model_tag": "LLMPATH_CHAT_MODEL"}

    kind: Literal["chat"] = "chat"
    model_tag: str = Field(
        "llmpath-chat-onnx:latest", min_length=1, description="The ONNX causal LM in the BentoML store."
    )
