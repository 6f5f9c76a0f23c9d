"""The sequence-classifier family's recipe section: ONNX export, int8 and the parity gate."""

from __future__ import annotations

from pydantic import Field

from llmpath.config import Section, ServeConfig


class ClassifierExport(Section):
    """ONNX export, int8 quantization and the parity gate that decides what ships."""

    quantize: bool = Field(True, description="Also export dynamic int8 (fp32 is always exported).")
    per_channel: bool = Field(True, description="int8 scales per output channel (else per tensor).")
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="int8 vs PyTorch accuracy, absolute.")
    min_agreement: float = Field(
        0.97, ge=0, le=1, description="Share of validation rows where int8 and PyTorch agree."
    )


class ClassifierServe(ServeConfig):
    """The batched `/classify` Bento built from the champion."""

    bento_name: str = Field(
        "llmpath-classifier",
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="The Bento's name (`llmpath serve` finds it by it).",
    )
    max_texts: int = Field(64, gt=0, description="Texts one request may send.")
    max_batch_size: int = Field(32, gt=0, description="Texts BentoML's adaptive batcher puts in one call.")
    max_latency_ms: int = Field(
        10000,
        gt=0,
        description="BentoML's batcher answers 503 to a request it expects to wait longer than this. It is a "
        "shedding threshold, not a batching delay: at 1000 a busy 2-core host shed 1% at concurrency 16.",
    )
