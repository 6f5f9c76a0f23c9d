"""Bad data under the real Prefect flow: the run fails early, MLflow marks it FAILED, nothing is registered."""

from __future__ import annotations

import pytest

from flows.classify import classify
from llmpath.data import DataError
from llmpath.recipes import parse_recipe
from tests.conftest import task_states

pytestmark = pytest.mark.integration


def test_bad_data_fails_the_flow_and_registers_nothing(
    prefect_harness, home, tmp_path, monkeypatch, tiny_bert
):
    import mlflow

    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood film\t1\n\t0\nbad film\tmaybe\nfine\t0\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    recipe = parse_recipe(
        {
            "name": "bad-data",
            "registered_model": "never-registered",
            "data": {"train": "train.tsv", "text_column": "sentence", "labels": ["neg", "pos"]},
            "model": {"base": str(tiny_bert)},
        }
    )
    state = classify(recipe, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError, match=r"train.tsv: 2 of 4 rows invalid"):
        state.result()

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("bad-data")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "row 2: sentence: empty text" in runs[0].data.tags["llmpath.error"]
    assert client.search_registered_models(f"name='{recipe.registered_model}'") == []

    # The Prefect run records the failed stage by name.
    assert task_states(state.state_details.flow_run_id, {"prepare_data"}) == {"prepare_data": "Failed"}
