"""The sequence-classifier family's recipe section: ONNX export, int8 and the parity gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bentos.classifier.classifier_config import ClassifierSettings
from llmpath.config import Section


class ClassifierExport(Section):
    """ONNX export, int8 quantization and the parity gate that decides what ships."""

    quantize: bool = Field(True, description="Also export dynamic int8 (fp32 is always exported).")
    per_channel: bool = Field(True, description="int8 scales per output channel (else per tensor).")
    int8_for: Literal["auto", "avx2", "avx512_vnni", "arm64"] = Field(
        "auto",
        description="CPU family the int8 configuration is chosen for. auto: the exporting host's (u8/s8 weights "
        "with VNNI or AMX, u8/u8 on other x86, s8 on arm64); name one when the model will be served elsewhere.",
    )
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="int8 vs PyTorch accuracy, absolute.")
    min_agreement: float = Field(
        0.97, ge=0, le=1, description="Share of validation rows where int8 and PyTorch agree."
    )


# The classifier Bento's serve section: the schema its service reads (bentos/classifier/classifier_config.py).
ClassifierServe = ClassifierSettings
