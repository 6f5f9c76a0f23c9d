"""The span family's recipe sections: ONNX export, int8 and the parity gate; the QA Bento's serve section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bentos.qa.qa_config import QaSettings
from llmpath.config import Section


class SpanExport(Section):
    """ONNX export, int8 quantization and the parity gate that decides what ships."""

    quantize: bool = Field(True, description="Also export dynamic int8 (fp32 is always exported).")
    per_channel: bool = Field(True, description="int8 scales per output channel (else per tensor).")
    int8_for: Literal["auto", "avx2", "avx512_vnni", "arm64"] = Field(
        "auto",
        description="CPU family the int8 configuration is chosen for (auto: the exporting host's); name one "
        "when the model will be served elsewhere.",
    )
    max_f1_drop: float = Field(0.01, ge=0, le=1, description="F1 of an ONNX form vs PyTorch, absolute.")
    min_agreement: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Share of validation questions where the form and PyTorch pick the same span.",
    )


# The QA Bento's serve section: the schema its service reads (bentos/qa/qa_config.py).
QaServe = QaSettings
