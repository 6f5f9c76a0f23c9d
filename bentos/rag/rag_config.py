"""The rag Bento's serve config: `RagSettings` (a rag recipe's `serve` section), `AskSettings` (what /ask reads
of its `ask` section) and `RagServe` (what its service reads: both, plus the models and index settings packaging
fills in).

Beside service.py in the repo and in the Bento, so only the kinds that serve with this Bento carry it in their
code version. Pydantic and the shared base (serve_config.py) only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

try:
    import serve_config  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import serve_config


class RagSettings(serve_config.ServeSettings):
    """The Bento that searches and answers (POST /search and /ask)."""

    bento_name: str = Field(
        "llmpath-rag",
        pattern=serve_config.NAME,
        description="The Bento's name (`llmpath serve` finds it by it).",
    )
    max_chars: int = Field(2000, gt=0, description="Characters per query or question.")
    max_input_tokens: int = Field(
        1536,
        gt=0,
        description="Longer prompts (question and passages) get a 400; the weakest passages go first.",
    )
    max_new_tokens: int = Field(256, gt=0, description="The cap on an /ask request's max_new_tokens.")


class AskSettings(serve_config.Settings):
    """What /ask reads of the recipe's `ask` section (the rag recipe's AskConfig adds what evaluation reads)."""

    prompt_template: str = Field(
        "Answer the question with a short phrase taken from the context.\n\nContext:\n{context}\n\n"
        "Question: {question}",
        description="The user message; {context} gets the numbered passages, {question} the question.",
    )
    k: int = Field(3, gt=0, le=20, description="Passages put into the prompt when a request names none.")
    max_new_tokens: int = Field(32, gt=0, le=512, description="Answer length when a request names none.")

    @field_validator("prompt_template")
    @classmethod
    def _has_fields(cls, value: str) -> str:
        missing = [f for f in ("{context}", "{question}") if f not in value]
        if missing:
            raise ValueError(f"must contain {' and '.join(missing)}")
        return value


class RagServe(RagSettings, serve_config.BaseServe):
    """The rag Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {
        "index_model_tag": "LLMPATH_RAG_INDEX",
        "chat_model_tag": "LLMPATH_RAG_CHAT",
    }
    PACKAGED: ClassVar[frozenset[str]] = frozenset({"search_params", "embed_max_length"})
    SECTIONS: ClassVar[tuple[str, ...]] = ("ask",)

    kind: Literal["rag"] = "rag"
    index_model_tag: str = Field(
        "llmpath-rag-index:latest", min_length=1, description="Index, embedder and manifest in the store."
    )
    chat_model_tag: str = Field(
        "llmpath-rag-chat:latest", min_length=1, description="The ONNX chat model that answers /ask."
    )
    ask: AskSettings = Field(AskSettings(), description="The recipe's answering settings /ask uses.")
    search_params: dict[str, int] = Field(
        default_factory=dict, description="Milvus search parameters the index was evaluated with."
    )
    embed_max_length: int = Field(256, gt=0, le=4096, description="Query tokens kept before embedding.")
