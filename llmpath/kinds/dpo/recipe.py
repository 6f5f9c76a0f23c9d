"""The dpo recipe: preference tuning (DPO, TRL's loss) of a causal LM with LoRA, gated on held-out preference
accuracy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmpath.config import DataConfig, EvalConfig, RecipeBase, Section, TrainConfig
from llmpath.families.causal_lm.config import CausalExport, CausalLora, CausalModel, CausalServe


class DpoData(DataConfig):
    """Where the preference pairs come from (a prompt, a chosen and a rejected answer per row)."""

    pair_format: Literal["auto", "sharegpt", "plain"] = Field(
        "auto",
        description="Row form: sharegpt (`conversations` turns, `chosen`/`rejected` turns, as LLaMA-Factory's "
        "dpo_en_demo), plain (`prompt`, `chosen`, `rejected` texts); auto picks by the columns a row has.",
    )
    overflow: Literal["truncate", "drop"] = Field(
        "truncate",
        description="Pairs whose prompt and answer exceed model.max_length tokens: the answers are cut (the "
        "prompt is kept whole) or the pair is dropped. A prompt that fills the window alone is always dropped.",
    )


class DpoObjectiveConfig(Section):
    """The preference objective: TRL's DPO loss against the frozen base (the adapter switched off)."""

    beta: float = Field(
        0.1, gt=0, description="DPO's beta: how far the policy may move from the reference (the KL weight)."
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="TRL's DPO loss variant: sigmoid (the DPO paper), ipo, hinge or robust."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Share of pairs assumed mislabelled (robust and sigmoid losses)."
    )


class DpoTrain(TrainConfig):
    """Optimisation settings. steps = ceil(pairs / batch_size) * epochs, unless max_steps caps it."""

    batch_size: int = Field(4, gt=0, description="Preference pairs per optimizer step.")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW peak learning rate.")


class DpoEval(EvalConfig):
    """Preference accuracy and reward margin on the held-out pairs, then the chat metrics (greedy answers to
    the held-out prompts, ROUGE-L against the chosen answer); the gate is on preference accuracy."""

    metric: Literal["preference_accuracy"] = Field(
        "preference_accuracy",
        description="The metric the gate compares: share of held-out pairs whose chosen answer the model "
        "gives a higher log-probability than the rejected one.",
    )
    batch_size: int = Field(4, gt=0, description="Pairs per forward pass when scoring.")
    max_prompts: int = Field(
        8, gt=0, description="Held-out prompts answered greedily (chat metrics, parity)."
    )
    max_new_tokens: int = Field(64, gt=0, le=1024, description="Answer length cap of the greedy answers.")


class DpoRecipe(RecipeBase):
    """A dpo run: preference pairs -> LoRA with TRL's DPO loss -> preference-accuracy gate -> ONNX -> chat Bento."""

    kind: Literal["dpo"] = Field("dpo", description="Always `dpo` for this recipe.")
    data: DpoData = Field(description="The preference pairs.")
    model: CausalModel = Field(
        description="The base model: `packaged:smollm2-135m-instruct`, a local folder, `hub:ORG/NAME`, or "
        "`registry:NAME` (that registered chat model's champion)."
    )
    dpo: DpoObjectiveConfig = Field(DpoObjectiveConfig(), description="The DPO loss (TRL) and its beta.")
    lora: CausalLora = Field(CausalLora(), description="The LoRA adapter that DPO trains.")
    train: DpoTrain = Field(DpoTrain(), description="Optimisation settings.")
    eval: DpoEval = Field(DpoEval(), description="Held-out preference accuracy (the gate) and chat metrics.")
    export: CausalExport = Field(CausalExport(), description="ONNX export and its parity gate.")
    serve: CausalServe = Field(
        CausalServe(), description="The OpenAI-style chat Bento built from the champion."
    )
