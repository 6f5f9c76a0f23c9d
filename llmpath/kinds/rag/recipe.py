"""The rag recipe: a corpus indexed in Milvus, gated on retrieval quality, answered with a chat model. The
`index` section is the index family's (`llmpath.families.index.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bentos.rag.rag_config import AskSettings, RagSettings
from llmpath.config import EvalConfig, ModelConfig, RecipeBase, RoutingConfig, Section
from llmpath.families.index.config import IndexConfig


class CorpusSource(Section):
    """One corpus source: SQuAD JSON, a folder of Markdown/text files, or JSONL with a text field."""

    path: str = Field(description="File or folder under the data root (or absolute).")
    format: Literal["auto", "squad", "folder", "jsonl"] = Field(
        "auto", description="auto: a folder, *.jsonl, or SQuAD-format *.json."
    )
    text_field: str = Field("text", description="jsonl: the field holding the text.")
    id_field: str | None = Field(None, description="jsonl: a field naming each document (default: row).")
    questions: bool = Field(True, description="squad: its questions become the evaluation set.")
    max_documents: int | None = Field(None, gt=0, description="Keep the first N documents.")


class CorpusConfig(Section):
    """rag: what gets indexed and how it is cut into chunks."""

    sources: list[CorpusSource] = Field(min_length=1)
    chunking: Literal["paragraph", "tokens"] = Field(
        "paragraph",
        description="paragraph: one chunk per paragraph (longer ones are cut into token windows); "
        "tokens: windows of chunk_tokens with chunk_overlap over each document.",
    )
    chunk_tokens: int = Field(256, ge=16, le=512, description="Window size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive windows.")
    min_chars: int = Field(20, ge=1, description="Shorter chunks are dropped (headings, blank lines).")
    max_questions: int | None = Field(None, gt=0, description="Evaluate on the first N questions.")
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="Unusable documents above this share fail the run; below, skipped."
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> CorpusConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"corpus.chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens ({self.chunk_tokens})"
            )
        return self


class AskConfig(AskSettings):
    """rag: answering with retrieved passages and the chat model: what `/ask` reads (its prompt, passages and
    answer length, shared with the Bento's serve config) and what evaluation adds."""

    chat_model: str = Field(
        "packaged:smollm2-135m-instruct",
        description="`registry:NAME` (that chat model's champion ONNX form), `packaged:NAME` or a local "
        "folder (exported to ONNX once and cached).",
    )
    closed_book_template: str = Field(
        "Answer the question with a short phrase.\n\nQuestion: {question}",
        description="The same question without retrieval, for the closed-book comparison.",
    )
    sample: int = Field(16, ge=0, description="Questions answered in evaluation (0 skips it).")
    reader: str | None = Field(
        None,
        pattern=r"^registry:[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="`registry:NAME`: that qa model's champion also answers the sampled questions, extractively "
        "from the same retrieved passages; EM/F1 of both readers side by side (evaluation only).",
    )


class RagModel(ModelConfig):
    """The embedder."""

    base: str = Field(
        "packaged:all-minilm-l6-v2", description="`packaged:NAME`, a local folder, or `hub:ORG/NAME`."
    )
    max_length: int = Field(256, gt=0, le=4096, description="The embedder's token window.")


class RagEval(EvalConfig):
    """Retrieval evaluation and the gate: recall@5 at or above the floor and the champion's."""

    metric: Literal["recall_at_5"] = Field("recall_at_5", description="The metric the gate compares.")
    floor: float = Field(
        0.5, ge=0, le=1, description="Recall@5 an index needs before `champion` may point at it."
    )


class RagRouting(RoutingConfig):
    """Which Prefect work pool runs which stage (rag: every stage in the flow's process by default)."""

    pools: dict[str, str] = Field(default_factory=dict, description="stage name -> work pool name")


class RagRecipe(RecipeBase):
    """A rag run: corpus -> chunks -> embeddings -> Milvus collection -> recall gate -> answers -> Bento."""

    kind: Literal["rag"] = Field("rag", description="Always `rag` for this recipe.")
    model: RagModel = RagModel()
    corpus: CorpusConfig = Field(description="The documents to index.")
    index: IndexConfig = IndexConfig()
    eval: RagEval = RagEval()
    ask: AskConfig = AskConfig()
    serve: RagSettings = RagSettings()
    routing: RagRouting = RagRouting()
