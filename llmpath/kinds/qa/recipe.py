"""The qa recipe: extractive question answering, a span head fine-tuned on an encoder with SQuAD."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmpath.config import DataConfig, EvalConfig, ModelConfig, RecipeBase, TrainConfig
from llmpath.families.span.config import QaServe, SpanExport


class QaData(DataConfig):
    """SQuAD v1.1 JSON and how its questions are held out."""

    train: str = Field(
        description="SQuAD v1.1 JSON under the data root (or absolute): paragraphs and questions."
    )
    validation: str | None = Field(
        None, description="Another SQuAD file to evaluate on; if absent, whole groups are held out of train."
    )
    hub: None = Field(None, description="Not used by qa: the data is a SQuAD JSON file.")
    format: Literal["auto", "squad"] = Field("auto", description="Always SQuAD v1.1 JSON.")
    split: Literal["paragraph", "article"] = Field(
        "paragraph",
        description="What is held out whole: a paragraph (its questions are never trained on, but its article's "
        "other paragraphs may be) or an article (no held-out topic is seen in training).",
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of paragraphs (or articles) held out."
    )
    max_train_rows: int | None = Field(None, gt=0, description="Seeded sample of the training questions.")
    max_validation_rows: int | None = Field(
        None, gt=0, description="Seeded sample of the held-out questions."
    )


class QaModel(ModelConfig):
    """The encoder and the token window its questions and contexts are read in."""

    base: str = Field(
        "packaged:all-minilm-l6-v2",
        description="`packaged:NAME`, a local folder, or `hub:ORG/NAME`: an encoder.",
    )
    max_length: int = Field(
        384,
        gt=16,
        le=4096,
        description="Tokens per window (question + context); longer contexts get more windows.",
    )


class QaEval(EvalConfig):
    """Evaluation on the held-out questions and the promotion gate."""

    metric: Literal["f1", "exact_match"] = Field("f1", description="The SQuAD metric the gate compares.")


class QaRecipe(RecipeBase):
    """A qa run: SQuAD -> span head fine-tuning -> EM/F1 and gate -> ONNX (int8 if it agrees) -> /answer Bento."""

    kind: Literal["qa"] = Field("qa", description="Always `qa` for this recipe.")
    data: QaData = Field(description="SQuAD questions, split by paragraph or article.")
    model: QaModel = QaModel()
    train: TrainConfig = TrainConfig()
    eval: QaEval = QaEval()
    export: SpanExport = SpanExport()
    serve: QaServe = QaServe()
