"""Stages `evaluate_base` and `evaluate_candidate`: the recipe's kind scores the base model and the merged
candidate on the validation split (classify: accuracy, macro-F1, confusion matrix; chat: loss, perplexity,
ROUGE-L of greedy answers)."""

from __future__ import annotations

from llmpath import lineage, links, tracking
from llmpath.recipes import Recipe, kind_of
from llmpath.results import Evaluation, PreparedData, TrainedModel
from llmpath.splits import read_split
from tasks.stages import kind_version, stage


def score_base(recipe: Recipe, data: PreparedData, run_id: str) -> Evaluation:
    """The base model as training starts from it (classify: with the same seeded head). Its `base.*` metrics
    belong to the base's logged model, never to the candidate."""
    import mlflow

    base = kind_of(recipe).base_model(recipe)
    tracking.configure()
    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    model_id = lineage.base_model(experiment_id, run_id, recipe.model.base, base.revision)
    with lineage.metrics_for(model_id):
        return kind_of(recipe).evaluate(recipe, data, run_id, "base", base.path, base=True)


def score_candidate(recipe: Recipe, data: PreparedData, trained: TrainedModel, run_id: str) -> Evaluation:
    """The merged fine-tuned model; its `candidate.*` metrics belong to it. It also gets an input example: a
    validation text."""
    model_dir = tracking.download_model(trained.model_uri)
    with lineage.metrics_for(links.model_id_of(trained.model_uri)):
        scored = kind_of(recipe).evaluate(recipe, data, run_id, "candidate", model_dir, base=False)
    try:
        rows = read_split(data, "validation")
        example = lineage.example_input(rows[0]) if rows else None
        lineage.describe_calls(trained.model_uri, [example] if example else None)
    except Exception as err:  # the scores stand; only the model's card is incomplete
        print(f"could not add an input example to {trained.model_uri}: {err}")
    return scored


def _common_key(recipe: Recipe, data: PreparedData) -> dict:
    return {
        "kind": recipe.kind,
        "data": data.fingerprint,
        "max_length": recipe.model.max_length,
        "batch_size": recipe.eval.batch_size,  # padding per batch; the gate settings do not change scores
    } | kind_of(recipe).eval_key(recipe)


def base_key(recipe: Recipe, data: PreparedData, **_) -> dict:
    return _common_key(recipe, data) | {"base": data.base_revision, "head_seed": recipe.train.seed}


def candidate_key(recipe: Recipe, data: PreparedData, trained: TrainedModel, **_) -> dict:
    return _common_key(recipe, data) | {"model": trained.model_uri}


evaluate_base = stage(score_base, name="evaluate_base", key=base_key, version=kind_version)
evaluate_candidate = stage(
    score_candidate, name="evaluate_candidate", key=candidate_key, version=kind_version
)
