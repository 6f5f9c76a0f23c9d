"""A tiny random-init BERT through every classify stage with the real libraries and a temp MLflow store."""

from __future__ import annotations

import json

import pytest

from llmpath import tracking
from llmpath.config import parse_recipe
from tasks.runs import pipeline_run
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.integration


@pytest.fixture
def recipe(tmp_path, monkeypatch, tiny_bert, home):
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    raw = tiny_recipe(
        tmp_path,
        tiny_bert,
        name="tiny",
        rows=(240, 80),
        train={"threads": 2},
        export={"max_accuracy_drop": 0.05, "min_agreement": 0.9},
    )
    return parse_recipe(raw)


def test_stages_end_to_end(recipe):
    import mlflow

    from tasks.data import prepare
    from tasks.evaluate import score_base, score_candidate
    from tasks.export import check_parity, export_version
    from tasks.registry import alias_version, mark_deployable_version, promote_candidate, register_model
    from tasks.train import train

    with pipeline_run(recipe) as run:
        rid = run.run_id
        data = prepare(recipe, rid)
        assert data.rows == {"train": 240, "validation": 80}
        trained = train(recipe, data, rid)
        base = score_base(recipe, data, rid)
        candidate = score_candidate(recipe, data, trained, rid)
        run.registration = register_model(recipe, trained, candidate, rid)
        run.promotion = promote_candidate(recipe, run.registration, base, candidate, rid)
        exported = export_version(recipe, trained, rid)
        checked = check_parity(recipe, data, exported, candidate, rid)
        mark_deployable_version(run.registration, exported, checked)

    # Training learned the toy task and every step's loss reached MLflow.
    assert trained.steps == 90  # ceil(240 / 16) * 6
    assert candidate.metrics["accuracy"] >= 0.9 > base.metrics["accuracy"] - 0.3
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(run.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, 91))  # every step
    by_step = {m.step: m.value for m in losses}
    assert sum(by_step[s] for s in range(81, 91)) < sum(by_step[s] for s in range(1, 11))

    # Artifacts a person would open in the MLflow UI.
    names = {a.path for a in client.list_artifacts(run.run_id, "eval/candidate")}
    assert {"eval/candidate/confusion_matrix.png", "eval/candidate/predictions.json"} <= names
    assert {a.path for a in client.list_artifacts(run.run_id, "plots")} == {"plots/loss.png"}
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    params = finished.data.params
    assert (
        params["lora.r"] == "8"
        and params["train.learning_rate"] == "0.01"
        and params["train.total_steps"] == "90"
    )

    # Registry: version 1 with both aliases, lineage tags, ONNX forms and the parity verdict.
    assert run.registration.version == "1"
    assert alias_version("tiny-classifier", "candidate") == "1"
    assert run.promotion.promoted and alias_version("tiny-classifier", "champion") == "1"
    tags = client.get_model_version("tiny-classifier", "1").tags
    assert tags["run_id"] == run.run_id and tags["adapter_uri"].endswith("/adapter")
    assert json.loads(tags["promotion.record"])["previous_version"] is None
    assert tags["deployable.form"] == checked.deployable_form and tags["onnx.fp32_uri"] == exported.fp32_uri
    # Registering the same logged model again (a re-run that reused training) keeps its version.
    again = register_model(recipe, trained, candidate, rid)
    assert again.version == "1" and not again.created
    onnx = {a.path for a in client.list_artifacts(run.run_id, "onnx/int8")}
    assert "onnx/int8/model_quantized.onnx" in onnx
    assert checked.metrics["parity.int8.agreement"] >= 0.9
    assert checked.deployable_form == "int8"

    # The adapter alone reloads on the base model and reproduces the merged model's predictions.
    from peft import PeftModel

    from llmpath.classifier import argmax, load_for_classification, predict

    base_model, tokenizer = load_for_classification(recipe.model.base, recipe.data.labels)
    adapted = PeftModel.from_pretrained(base_model, tracking.download(trained.adapter_uri))
    merged, _ = load_for_classification(tracking.download_model(trained.model_uri), recipe.data.labels)
    texts = ["a great and superb film 1", "a dull and boring plot 2"]
    assert argmax(predict(adapted, tokenizer, texts, 32)) == argmax(predict(merged, tokenizer, texts, 32))


def _logged_model(recipe):
    """A fresh logged model (each registration below is a different model)."""
    import mlflow

    from tasks.results import TrainedModel

    tracking.ensure_experiment(recipe.experiment_name)
    with mlflow.start_run() as active:
        logged = mlflow.transformers.log_model(
            str(recipe.model.base),
            name="model",
            task="text-classification",
            pip_requirements=["transformers"],
        )
    return TrainedModel(
        run_id=active.info.run_id,
        model_uri=logged.model_uri,
        adapter_uri="runs:/x/adapter",
        base_revision="r",
        steps=1,
        final_loss=0.1,
        seconds=1.0,
    )


def test_gate_undo_promote_rollback_and_alias_history(recipe, prefect_harness, capsys):
    import mlflow

    from llmpath.cli import main
    from tasks import aliases
    from tasks.registry import alias_version, promote_candidate, register_model, undo_registration
    from tasks.results import Evaluation

    name = recipe.registered_model
    trained = [_logged_model(recipe) for _ in range(4)]
    run_id = trained[0].run_id

    def evaluation(kind, accuracy):
        return Evaluation(
            name=kind, metrics={"accuracy": accuracy, "macro_f1": accuracy}, predictions_uri="-"
        )

    base = evaluation("base", 0.5)
    # A run that fails right after its first registration leaves no registered model behind.
    doomed = register_model(recipe, trained[0], evaluation("candidate", 0.8), run_id)
    undo_registration(doomed, None)
    assert mlflow.MlflowClient().search_registered_models(f"name='{name}'") == []

    first = register_model(recipe, trained[1], evaluation("candidate", 0.8), run_id)
    assert promote_candidate(recipe, first, base, evaluation("candidate", 0.8), run_id).promoted
    again = promote_candidate(recipe, first, base, evaluation("candidate", 0.8), run_id)
    assert not again.promoted and "already the champion" in again.reason

    second = register_model(recipe, trained[2], evaluation("candidate", 0.7), run_id)
    kept = promote_candidate(recipe, second, base, evaluation("candidate", 0.7), run_id)
    assert not kept.promoted and "does not beat champion v1" in kept.reason
    assert alias_version(name, "champion") == "1"
    assert alias_version(name, "candidate") == "2"

    third = register_model(recipe, trained[3], evaluation("candidate", 0.9), run_id)
    moved = promote_candidate(recipe, third, base, evaluation("candidate", 0.9), run_id)
    assert moved.promoted and alias_version(name, "champion") == "3"
    # A later stage fails: the version goes away and both aliases return to where they were.
    undo_registration(third, moved)
    assert alias_version(name, "champion") == "1"
    assert alias_version(name, "candidate") == "2"
    versions = {str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'")}
    assert versions == {"1", "2"}

    # By hand, through the CLI and the promote/rollback flows: v2 has no deployable form, so it needs --force;
    # then roll back to v1, and no further.
    assert main(["promote", name, "2", "--reason", "try v2"]) == 2
    assert "no deployable ONNX form" in capsys.readouterr().err
    assert main(["promote", name, "2", "--reason", "operator override", "--force"]) == 0
    assert alias_version(name, "champion") == "2"
    assert main(["rollback", name, "--reason", "v2 misbehaves"]) == 0
    assert alias_version(name, "champion") == "1"
    assert main(["rollback", name, "--reason", "again"]) == 2
    assert "first recorded champion" in capsys.readouterr().err

    moves = aliases.history(name)
    assert [(m.action, m.from_version, m.to_version) for m in moves] == [
        ("gate", None, "1"),
        ("gate", "1", "3"),
        ("undo", "3", "1"),
        ("promote", "1", "2"),
        ("rollback", "2", "1"),
    ]
    assert moves[3].why == "operator override" and moves[3].who
    assert moves[0].metrics["eval.accuracy"] == pytest.approx(0.8)
    assert main(["history", name]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert (
        "v2 misbehaves" in printed[-1] and "v2 -> v1" in printed[-1] and printed[0].startswith("when (UTC)")
    )
