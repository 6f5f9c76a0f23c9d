"""The `pipeline` flow runs every recipe of a release through its flow and ends with one summary."""

from __future__ import annotations

import pytest

from flows.pipeline import pipeline
from llmpath.recipes import parse_recipe
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.integration


def test_pipeline_runs_each_recipe_and_summarizes_the_release(
    prefect_harness, home, tmp_path, monkeypatch, tiny_bert
):
    import bentoml

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMPATH_MLFLOW_UI_URL", "http://mlflow.example:5000")
    recipes = [parse_recipe(tiny_recipe(tmp_path, tiny_bert, name=n)) for n in ("release-a", "release-b")]
    rows = pipeline(recipes)

    assert [r["recipe"] for r in rows] == ["release-a", "release-b"]
    for row in rows:
        assert row["candidate"] == row["champion"] == "1"
        assert row["deployable form"] in {"int8", "fp32"}
        assert bentoml.get(row["bento"]).info.labels["registered_model"] == row["model"]
        assert row["mlflow run"].startswith("http://mlflow.example:5000/#/experiments/")

    with pytest.raises(ValueError, match="unique"):
        pipeline([recipes[0], recipes[0]])
