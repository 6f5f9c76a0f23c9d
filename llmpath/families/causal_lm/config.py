"""The causal-LM family's recipe sections, shared by every kind whose model is a causal LM: the base model's
window, LoRA/QLoRA on the attention projections, ONNX export with KV cache and its parity gate, and the
OpenAI-style Bento."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from bentos.chat.chat_config import ChatSettings
from llmpath.config import LoraConfig, ModelConfig, Section


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


class CausalModel(ModelConfig):
    """The base causal LM and its token window."""

    max_length: int = Field(512, gt=0, le=4096, description="Token window of a conversation.")


class CausalLora(LoraConfig):
    """PEFT LoRA adapter settings; QLoRA with `quantization`."""

    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Names of the linear layers that get adapters.",
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="Load the frozen base in 4-bit (nf4) or 8-bit with bitsandbytes (QLoRA)."
    )

    @model_validator(mode="after")
    def _qlora_needs_an_adapter(self) -> CausalLora:
        if self.quantization != "none" and not self.enabled:
            raise ValueError(
                "quantization loads a frozen k-bit base for an adapter (QLoRA): set enabled: true, or "
                "quantization: none for full fine-tuning"
            )
        return self


# The chat Bento's serve section: the schema its service reads (bentos/chat/chat_config.py).
CausalServe = ChatSettings
