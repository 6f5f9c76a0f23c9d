"""The QA Bento's serve config: `QaSettings` (a qa recipe's `serve` section) and `QaServe` (what its service
reads: those settings plus the model tag packaging fills in). Pydantic and the shared base only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

try:
    import serve_config  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import serve_config


class QaSettings(serve_config.ServeSettings):
    """The extractive-QA `/answer` Bento."""

    bento_name: str = Field(
        "llmpath-qa",
        pattern=serve_config.NAME,
        description="The Bento's name (`llmpath serve` finds it by it).",
    )
    max_question_chars: int = Field(1000, gt=0, description="Characters a question may have (longer: 400).")
    max_context_chars: int = Field(20000, gt=0, description="Characters a context may have (longer: 413).")
    stride: int = Field(
        128,
        ge=0,
        description="Tokens consecutive windows of a long context share (training and evaluation cut the same way).",
    )
    max_answer_tokens: int = Field(
        30,
        gt=0,
        description="The longest answer span, in tokens (evaluation and parity decode the same way).",
    )


class QaServe(QaSettings, serve_config.BaseServe):
    """The QA Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {"model_tag": "LLMPATH_QA_MODEL"}

    kind: Literal["qa"] = "qa"
    model_tag: str = Field(
        "llmpath-qa-onnx:latest", min_length=1, description="The ONNX reader in the store."
    )
