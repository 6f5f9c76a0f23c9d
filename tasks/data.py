"""Stage `prepare_data`: the recipe's kind loads, validates, splits and reports its data; the splits and the
report are artifacts of the run (the splits also its dataset inputs), the report also a Prefect artifact."""

from __future__ import annotations

from llmpath import lineage
from llmpath.links import artifact_key
from llmpath.recipes import Recipe, kind_of
from llmpath.results import PreparedData
from tasks.publish import publish_markdown
from tasks.stages import kind_version, stage


def prepare(recipe: Recipe, run_id: str) -> PreparedData:
    """Validate the recipe's data, write splits + report to the run, return a reference to them."""
    prepared, markdown = kind_of(recipe).prepare(recipe, run_id)
    try:  # the MLflow UI's Datasets column: what this run trains and is evaluated on
        lineage.log_split_inputs(run_id, recipe.data, prepared)
    except Exception as err:  # a record, not the data: the splits are written and checked
        print(f"could not log the dataset inputs of MLflow run {run_id}: {err}")
    publish_markdown(artifact_key(recipe.name, "data-report"), markdown, f"Data report for {recipe.name}")
    print(markdown)
    return prepared


def prepare_key(recipe: Recipe, **_) -> dict:
    """What decides the prepared data: the data section, the files' bytes, the tokenizer (base model revision)."""
    kind = kind_of(recipe)
    base = kind.base_model(recipe)
    return {
        "kind": recipe.kind,
        "data": recipe.data.model_dump(),
        "files": kind.data_files(recipe),
        "model": recipe.model.model_dump(),
        "base": base.revision,
    } | kind.data_key(recipe)


prepare_data = stage(prepare, name="prepare_data", key=prepare_key, version=kind_version)
