"""The classify recipe: LoRA sequence classification of text into named classes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmpath.config import DataConfig, EvalConfig, LoraConfig, RecipeBase, TrainConfig
from llmpath.families.classifier.config import ClassifierExport, ClassifierServe


class ClassifyData(DataConfig):
    """Where the data comes from and how its columns map to text and label."""

    text_column: str = Field("text", description="The column holding the text.")
    label_column: str = Field("label", description="The column holding the label (an index or a name).")
    labels: list[str] = Field(
        min_length=2, description="Class names, e.g. [negative, positive]; raw labels are an index or a name."
    )


class ClassifyEval(EvalConfig):
    """Evaluation on the validation split and the promotion gate."""

    metric: Literal["accuracy", "macro_f1"] = Field("accuracy", description="The metric the gate compares.")


class ClassifyRecipe(RecipeBase):
    """A classify run: data -> LoRA fine-tuning -> evaluation and gate -> ONNX int8 -> classifier Bento."""

    kind: Literal["classify"] = Field(
        "classify", description="Always `classify` for this recipe (the default when absent)."
    )
    data: ClassifyData = Field(description="The labelled training data.")
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: ClassifyEval = ClassifyEval()
    export: ClassifierExport = ClassifierExport()
    serve: ClassifierServe = ClassifierServe()
