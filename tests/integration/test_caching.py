"""Content caching under the real Prefect flow: an unchanged re-run reuses every cached stage; a changed eval
setting re-runs evaluation and what depends on it, nothing upstream."""

from __future__ import annotations

import pytest

from flows.classify import classify
from llmpath.recipes import parse_recipe
from tests.conftest import task_states, tiny_recipe

pytestmark = pytest.mark.integration
CACHED = {"prepare_data", "finetune", "evaluate_base", "evaluate_candidate", "export", "parity"}
LIVE = {"register", "gate", "mark_deployable", "package", "promote"}  # read the live registry: never cached


def run(raw: dict) -> tuple[dict, dict[str, str]]:
    state = classify(parse_recipe(raw), return_state=True)
    assert state.is_completed(), state
    return state.result(), task_states(state.state_details.flow_run_id, CACHED | LIVE)


def test_unchanged_rerun_is_cached_and_eval_change_reruns_downstream(
    prefect_harness, home, tmp_path, monkeypatch, tiny_bert
):
    import mlflow

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    raw = tiny_recipe(tmp_path, tiny_bert, name="cache")
    first, states = run(raw)
    assert set(states) == CACHED | LIVE and set(states.values()) == {"Completed"}

    second, states = run(raw)
    assert {s for s, name in states.items() if name == "Cached"} == CACHED
    assert {states[s] for s in LIVE} == {"Completed"}
    # Same model, same version: the re-run registered nothing new and the champion stays.
    assert second["candidate"] == first["candidate"] == "1" and second["champion"] == "1"
    client = mlflow.MlflowClient()
    rerun = client.get_run(second["mlflow run"])
    assert (
        rerun.data.tags["stage.finetune"].startswith("cached")
        and first["mlflow run"] in (rerun.data.tags["stage.finetune"])
    )
    # The reused evaluation is on the new run too, so the two runs compare side by side in the MLflow UI.
    assert rerun.data.metrics["candidate.accuracy"] == pytest.approx(
        client.get_run(first["mlflow run"]).data.metrics["candidate.accuracy"]
    )

    raw["eval"] = {"batch_size": 7}
    third, states = run(raw)
    assert {s for s, name in states.items() if name == "Cached"} == {"prepare_data", "finetune", "export"}
    assert {states[s] for s in ("evaluate_base", "evaluate_candidate", "parity")} == {"Completed"}

    # A cache entry whose MLflow run was deleted is not trusted: the stages that depend on it compute again.
    client.delete_run(first["mlflow run"])  # held the data, the model and the ONNX forms
    fourth, _ = run(raw)
    tags = client.get_run(fourth["mlflow run"]).data.tags
    assert {tags[f"stage.{s}"].split(" ")[0] for s in ("prepare_data", "finetune", "export")} == {"ran"}
    assert (
        tags["stage.evaluate_base"].startswith("cached")
        and third["mlflow run"] in tags["stage.evaluate_base"]
    )
    assert fourth["candidate"] == "2"  # a newly trained model is a new version
