"""The causal-LM family's recipe section: ONNX export with KV cache, quantized forms and the parity gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from llmpath.config import Section


class CausalExport(Section):
    """ONNX fp32 export with KV cache, the quantized forms to try, and the parity gate that picks what ships."""

    quantize: bool = Field(True, description="Try the quantized forms (fp32 is always exported).")
    min_agreement: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Top-1 agreement of each quantized form with PyTorch's greedy tokens (teacher-forced) on "
        "the probe prompts.",
    )
    quantized_forms: list[Literal["int8-weight", "int4-weight", "int8-dynamic"]] = Field(
        default_factory=lambda: ["int8-weight", "int4-weight"],
        description="Quantized ONNX forms to try. *-weight: MatMulNBits weight-only, fp32 compute, lm_head "
        "kept fp32; int8-dynamic: dynamic int8 MatMul, per-channel.",
    )
    block_size: int = Field(32, ge=16, description="Weight-only quantization block (power of two).")
    probe_prompts: int = Field(16, gt=0, description="Prompts of the parity probe set.")
    prefer: Literal["speed", "size"] = Field(
        "speed", description="Among forms that pass parity, ship the fastest or the smallest."
    )

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (16, 32, 64, 128), not {value}")
        return value
