"""The serve config: what a recipe's `serve` section says, what the `package` stage writes into a Bento
(bento_config.json) and what its service reads. One schema and one set of defaults for all three: the recipe
sections are this module's settings classes (`ClassifierSettings`, `ChatSettings`, `RagSettings`,
`AskSettings`), and each Bento's config extends its settings with what packaging fills in.

- `from_recipe_sections(kind, serve, extra)`: the config of a kind's Bento from the recipe's `serve` section and
  what packaging adds (model tags; rag: the `ask` section and the index's search settings), as plain dicts.
- `write(folder, config)` at packaging; `read(folder, kind)` in the service. With no file (serving from source
  in the repo) `read` returns the defaults. The model-tag environment variables (`LLMPATH_CLASSIFIER_MODEL`,
  `LLMPATH_CHAT_MODEL`, `LLMPATH_RAG_INDEX`, `LLMPATH_RAG_CHAT`) win over the file, as they always have.

Pydantic only: no llmpath, Prefect or MLflow. It is copied into each Bento beside service.py (like guard.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FILE = "bento_config.json"
NAME = r"^[a-z0-9][a-z0-9._-]*$"


class ServeConfigError(ValueError):
    """A serve config that cannot be used; the message names the file (or the recipe) and the field."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ServeSettings(Settings):
    """What a recipe's `serve` section says, for every llmpath Bento: its name, where it listens and the request
    guard's limits. Each Bento's settings class below is also that recipe section (llmpath/config.py and the
    families use these classes), so the recipe and the service share one schema and one set of defaults."""

    bento_name: str = Field(pattern=NAME, description="The Bento's name (`llmpath serve` finds it by it).")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address the service binds to (loopback unless you say so)."
    )
    port: int = Field(3000, gt=0, lt=65536, description="Port the service listens on.")
    max_chars: int = Field(2000, gt=0, description="Longer texts in a request get a 400.")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Larger request bodies get a 413 (guard.py).")
    body_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A request body that takes longer to arrive gets a 408 (guard.py)."
    )


class ClassifierSettings(ServeSettings):
    """The batched `/classify` Bento."""

    bento_name: str = Field(
        "llmpath-classifier", pattern=NAME, description="The Bento's name (`llmpath serve` finds it by it)."
    )
    max_texts: int = Field(64, gt=0, description="Texts one request may send.")
    max_chars: int = Field(2000, gt=0, description="Characters per text.")
    max_batch_size: int = Field(32, gt=0, description="Texts BentoML's adaptive batcher puts in one call.")
    max_latency_ms: int = Field(
        10000,
        gt=0,
        description="BentoML's batcher answers 503 to a request it expects to wait longer than this. It is a "
        "shedding threshold, not a batching delay: at 1000 a busy 2-core host shed 1% at concurrency 16.",
    )


class ChatSettings(ServeSettings):
    """The OpenAI-style chat Bento (POST /generate and /v1)."""

    bento_name: str = Field(
        "llmpath-chat", pattern=NAME, description="The Bento's name (`llmpath serve` finds it by it)."
    )
    max_chars: int = Field(8000, gt=0, description="Characters per prompt or message.")
    max_input_tokens: int = Field(1024, gt=0, description="Longer conversations get a 400.")
    max_new_tokens: int = Field(256, gt=0, description="The cap on a request's max_tokens.")


class RagSettings(ServeSettings):
    """The Bento that searches and answers (POST /search and /ask)."""

    bento_name: str = Field(
        "llmpath-rag", pattern=NAME, description="The Bento's name (`llmpath serve` finds it by it)."
    )
    max_chars: int = Field(2000, gt=0, description="Characters per query or question.")
    max_input_tokens: int = Field(
        1536,
        gt=0,
        description="Longer prompts (question and passages) get a 400; the weakest passages go first.",
    )
    max_new_tokens: int = Field(256, gt=0, description="The cap on an /ask request's max_new_tokens.")


class AskSettings(Settings):
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


class BaseServe(ServeSettings):
    """The whole config a service reads: its recipe settings plus what packaging fills in."""

    # Model-tag field -> the environment variable that overrides it (a model from the store, served from source).
    TAG_ENV: ClassVar[dict[str, str]] = {}
    # Fields packaging fills in from the store or the index, not from the recipe: left out of the build digest.
    PACKAGED: ClassVar[frozenset[str]] = frozenset()
    # Recipe sections besides `serve` that this Bento reads (each becomes the field of that name).
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    kind: str = Field(
        description="Which Bento's config this is (classify, chat, rag: the family's BentoSpec.config); a service "
        "refuses another Bento's file."
    )

    @property
    def name(self) -> str:
        """The Bento's and the service's name."""
        return self.bento_name

    def settings_json(self) -> str:
        """The config without what packaging fills in (model tags, index settings): what the build digest
        hashes, known before anything is imported into the store."""
        return self.model_dump_json(exclude=set(self.TAG_ENV) | self.PACKAGED)


class ClassifierServe(ClassifierSettings, BaseServe):
    """The classifier Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {"model_tag": "LLMPATH_CLASSIFIER_MODEL"}

    kind: Literal["classify"] = "classify"
    model_tag: str = Field(
        "llmpath-classifier-onnx:latest",
        min_length=1,
        description="The ONNX classifier in the BentoML store.",
    )


class ChatServe(ChatSettings, BaseServe):
    """The chat Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {"model_tag": "LLMPATH_CHAT_MODEL"}

    kind: Literal["chat"] = "chat"
    model_tag: str = Field(
        "llmpath-chat-onnx:latest", min_length=1, description="The ONNX causal LM in the BentoML store."
    )


class RagServe(RagSettings, BaseServe):
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


MODELS: dict[str, type[BaseServe]] = {"classify": ClassifierServe, "chat": ChatServe, "rag": RagServe}


def from_recipe_sections(kind: str, serve: dict[str, Any], extra: dict[str, Any]) -> BaseServe:
    """The config of a `kind` Bento from the recipe's serve section (that Bento's settings class, as a plain
    dict) and `extra`: the model's SECTIONS (rag: `ask`) and what packaging adds (model tags; rag:
    `search_params`, `embed_max_length`). Raises ServeConfigError naming the key."""
    model = _model(kind)
    return _validate(model, serve | extra, f"the {kind} recipe's serve config")


def write(folder: str | Path, config: BaseServe) -> Path:
    """bento_config.json in `folder` (the Bento's build folder); its path."""
    path = Path(folder) / FILE
    path.write_text(config.model_dump_json(indent=2) + "\n")
    return path


def read(folder: str | Path, kind: str) -> BaseServe:
    """The config beside a service: `folder`/bento_config.json, or the defaults when there is none (serving
    from source), with the model-tag environment variables applied. Raises ServeConfigError naming the file and
    the field."""
    model, path = _model(kind), Path(folder) / FILE
    data: Any = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ServeConfigError(f"{path}: not a JSON serve config ({err})") from None
        if not isinstance(data, dict):
            raise ServeConfigError(f"{path}: a serve config is a JSON object, not {type(data).__name__}")
    env = {field: os.environ[var] for field, var in model.TAG_ENV.items() if os.environ.get(var)}
    return _validate(model, data | env, str(path))


def _model(kind: str) -> type[BaseServe]:
    if kind not in MODELS:
        raise ServeConfigError(f"no Bento serves kind {kind!r}; known: {', '.join(MODELS)}")
    return MODELS[kind]


def _validate(model: type[BaseServe], data: dict, source: str) -> BaseServe:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False, include_input=False, include_context=False):
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field (not in bentos/serve_config.py)"
            problems.append(f"{key}: {msg}")
        raise ServeConfigError(f"{source}: invalid {model.__name__}: " + "; ".join(problems)) from None
