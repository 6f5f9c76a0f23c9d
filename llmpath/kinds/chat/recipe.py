"""The chat recipe: instruction tuning of a decoder LM with LoRA or QLoRA, gated on ROUGE-L."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmpath.config import (
    DataConfig,
    EvalConfig,
    RecipeBase,
    TrainConfig,
)
from llmpath.families.causal_lm.config import CausalExport, CausalLora, CausalModel, CausalServe


class ChatData(DataConfig):
    """Where the conversations come from and how their columns map."""

    chat_format: Literal["auto", "alpaca", "messages", "sharegpt"] = Field(
        "auto", description="Row form; auto picks by the columns a row has."
    )
    columns: dict[
        Literal["instruction", "input", "output", "system", "messages", "conversations", "tools"], str
    ] = Field(default_factory=dict, description="Column names when they differ, e.g. {output: response}.")
    overflow: Literal["truncate", "drop"] = Field(
        "truncate", description="Conversations over model.max_length tokens are cut or dropped."
    )


class ChatTrain(TrainConfig):
    """Optimisation settings. steps = ceil(rows / batch_size) * epochs, unless max_steps caps it."""

    batch_size: int = Field(4, gt=0, description="Conversations per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="AdamW peak learning rate.")


class ChatEval(EvalConfig):
    """Loss, perplexity and ROUGE-L of greedy answers on the validation split; the gate is on ROUGE-L."""

    metric: Literal["rouge_l", "call_accuracy"] = Field(
        "rouge_l",
        description="The gate's metric: ROUGE-L of answers, or call_accuracy (tool-call data: right function "
        "and equal arguments on each held-out conversation's first call).",
    )
    batch_size: int = Field(8, gt=0, description="Conversations per forward pass for the loss.")
    max_prompts: int = Field(32, gt=0, description="Validation prompts answered greedily (ROUGE-L or calls).")
    max_new_tokens: int = Field(64, gt=0, le=1024, description="Answer length cap (ROUGE-L or calls).")


class ChatRecipe(RecipeBase):
    """A chat run: conversations -> LoRA/QLoRA -> ROUGE-L gate -> ONNX (+ quantized forms) -> OpenAI-style Bento."""

    kind: Literal["chat"] = Field("chat", description="Always `chat` for this recipe.")
    data: ChatData = Field(description="The conversations (Alpaca, messages or ShareGPT rows).")
    model: CausalModel = Field(description="The base model.")
    lora: CausalLora = CausalLora()
    train: ChatTrain = ChatTrain()
    eval: ChatEval = ChatEval()
    export: CausalExport = CausalExport()
    serve: CausalServe = CausalServe()
