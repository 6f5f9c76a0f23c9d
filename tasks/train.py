"""Stage `finetune`: the recipe's kind supplies the training objective, the shared loop (llmpath/training.py)
runs it with checkpoints and resume; goes to the GPU pool when it has a worker."""

from __future__ import annotations

from collections.abc import Callable

from llmpath.recipes import Recipe, kind_of
from llmpath.results import PreparedData, TrainedModel
from llmpath.training import fit
from tasks.stages import kind_version, stage, stage_key

__all__ = ["finetune", "train", "train_key"]


def train(
    recipe: Recipe,
    data: PreparedData,
    run_id: str,
    on_step: Callable[[int], None] | None = None,
) -> TrainedModel:
    """Fine-tune the recipe's model with its kind's objective. If an earlier run with the same inputs (this
    stage's cache key) was killed, continue from its last checkpoint."""
    key = stage_key(finetune, recipe=recipe, data=data)
    kind = kind_of(recipe)
    return fit(recipe, data, run_id, kind.objective(recipe), key, on_step, base=kind.base_model(recipe))


def train_key(recipe: Recipe, data: PreparedData, **_) -> dict:
    """What decides the trained weights. Logging cadence and thread count do not."""
    settings = recipe.train.model_dump(exclude={"log_every", "threads", "checkpoint_every"})
    return {
        "data": data.fingerprint,
        "kind": recipe.kind,
        "base": data.base_revision,
        "model": recipe.model.model_dump(),
        "lora": lora.model_dump() if (lora := getattr(recipe, "lora", None)) else None,  # none from scratch
        "train": settings,
    } | kind_of(recipe).train_key(recipe)


finetune = stage(train, name="finetune", key=train_key, hardware="gpu-preferred", version=kind_version)
