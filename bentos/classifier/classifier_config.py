"""The classifier Bento's serve config: `ClassifierSettings` (a classify recipe's `serve` section) and
`ClassifierServe` (what its service reads: those settings plus the model tag packaging fills in).

Beside service.py in the repo and in the Bento, so only the kinds that serve with this Bento carry it in their
code version. Pydantic and the shared base (serve_config.py) only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

try:
    import serve_config  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import serve_config


class ClassifierSettings(serve_config.ServeSettings):
    """The batched `/classify` Bento."""

    bento_name: str = Field(
        "llmpath-classifier",
        pattern=serve_config.NAME,
        description="The Bento's name (`llmpath serve` finds it by it).",
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


class ClassifierServe(ClassifierSettings, serve_config.BaseServe):
    """The classifier Bento's config."""

    TAG_ENV: ClassVar[dict[str, str]] = {"model_tag": "LLMPATH_CLASSIFIER_MODEL"}

    kind: Literal["classify"] = "classify"
    model_tag: str = Field(
        "llmpath-classifier-onnx:latest",
        min_length=1,
        description="The ONNX classifier in the BentoML store.",
    )
