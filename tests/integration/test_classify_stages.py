"""A tiny random-init BERT through every classify stage with the real libraries and a temp MLflow store."""

from __future__ import annotations

import json

import pytest

from llmpath import tracking
from llmpath.recipes import parse_recipe
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
    from tasks.registry import (
        alias_version,
        gate_candidate,
        mark_deployable_version,
        promote_decided,
        register_model,
    )
    from tasks.train import train

    with pipeline_run(recipe) as run:
        rid = run.run_id
        data = prepare(recipe, rid)
        assert data.rows == {"train": 240, "validation": 80}
        trained = train(recipe, data, rid)
        base = score_base(recipe, data, rid)
        candidate = score_candidate(recipe, data, trained, rid)
        run.registration = register_model(recipe, trained, candidate, rid)
        gated = gate_candidate(recipe, run.registration, base, candidate, rid)
        # The gate decided; champion moves only at the end, once the version is deployable.
        assert gated.promote and gated.target == "1" and alias_version("tiny-classifier", "champion") is None
        exported = export_version(recipe, trained, rid)
        checked = check_parity(recipe, data, exported, candidate, rid)
        mark_deployable_version(run.registration, exported, checked)
        run.promotion = promote_decided(gated, rid)

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
    assert {"onnx/int8/model_quantized.onnx", "onnx/int8/quantization.json"} <= onnx
    # The int8 configuration was chosen for this host's CPU, and the run says which and why.
    from bentos.classifier.runtime import int8_profile

    chosen = json.loads((tracking.download(exported.int8_uri) / "quantization.json").read_text())
    assert chosen["profile"] == int8_profile()[0] == finished_tags(run.run_id)["export.int8_profile"]
    assert chosen["weights"] == ("QInt8" if chosen["profile"] != "avx2" else "QUInt8")
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


def finished_tags(run_id: str) -> dict[str, str]:
    import mlflow

    return mlflow.MlflowClient().get_run(run_id).data.tags


def _logged_model(recipe):
    """A fresh logged model (each registration below is a different model)."""
    import mlflow

    from llmpath.results import TrainedModel

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


def _deployable(registration):
    """What mark_deployable writes after parity (the forms' URIs are not read here)."""
    from llmpath.results import ExportedModel, ParityResult
    from tasks.registry import mark_deployable_version

    exported = ExportedModel(run_id="x", fp32_uri="runs:/x/onnx/fp32", int8_uri=None)
    checked = ParityResult(
        deployable_form="fp32", deployable_uri="runs:/x/onnx/fp32", metrics={}, reason="ok"
    )
    mark_deployable_version(registration, exported, checked)


def test_gate_undo_promote_rollback_and_alias_history(recipe, prefect_harness, capsys):
    import mlflow

    from llmpath.cli import main
    from llmpath.results import Evaluation
    from tasks import aliases
    from tasks.registry import (
        alias_version,
        gate_candidate,
        promote_decided,
        register_model,
        undo_registration,
    )
    from tasks.stages import GateError

    name = recipe.registered_model
    trained = [_logged_model(recipe) for _ in range(6)]
    run_id = trained[0].run_id
    client = mlflow.MlflowClient()

    def evaluation(kind, accuracy):
        return Evaluation(
            name=kind, metrics={"accuracy": accuracy, "macro_f1": accuracy}, predictions_uri="-"
        )

    def versions():
        return {str(v.version) for v in client.search_model_versions(f"name='{name}'")}

    base = evaluation("base", 0.5)

    def gate(registration, accuracy):
        return gate_candidate(recipe, registration, base, evaluation("candidate", accuracy), run_id)

    # A run that fails right after its first registration leaves no registered model behind.
    doomed = register_model(recipe, trained[0], evaluation("candidate", 0.8), run_id)
    undo_registration(doomed, None)
    assert client.search_registered_models(f"name='{name}'") == []

    first = register_model(recipe, trained[1], evaluation("candidate", 0.8), run_id)
    decided = gate(first, 0.8)
    assert decided.promote and alias_version(name, "champion") is None  # decided, not moved
    assert client.get_model_version(name, "1").tags["promotion.decision"] == "approved"
    with pytest.raises(GateError, match="no deployable form"):  # never a champion without a form
        promote_decided(decided, run_id)
    assert alias_version(name, "champion") is None
    _deployable(first)
    assert promote_decided(decided, run_id).promoted and alias_version(name, "champion") == "1"
    assert client.get_model_version(name, "1").tags["promotion.decision"] == "promoted"
    again = gate(first, 0.8)
    assert not again.promote and "already the champion" in again.reason

    second = register_model(recipe, trained[2], evaluation("candidate", 0.7), run_id)
    kept = gate(second, 0.7)
    assert not kept.promote and "does not beat champion v1" in kept.reason and kept.target == "1"
    assert not promote_decided(kept, run_id).promoted
    assert alias_version(name, "champion") == "1"
    assert alias_version(name, "candidate") == "2"

    third = register_model(recipe, trained[3], evaluation("candidate", 0.9), run_id)
    _deployable(third)
    moved = promote_decided(gate(third, 0.9), run_id)
    assert moved.promoted and alias_version(name, "champion") == "3"
    # A later step fails: the version goes away and both aliases return to where they were.
    undo_registration(third, moved)
    assert alias_version(name, "champion") == "1"
    assert alias_version(name, "candidate") == "2"
    assert versions() == {"1", "2"}

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

    # Compare-and-set: the gate approved v4 while champion was v1; someone promotes v2 meanwhile. The run's
    # move does not overwrite it, and says so.
    fourth = register_model(recipe, trained[4], evaluation("candidate", 0.95), run_id)
    approved = gate(fourth, 0.95)
    _deployable(fourth)
    assert main(["promote", name, "2", "--reason", "meanwhile", "--force"]) == 0
    late = promote_decided(approved, run_id)
    assert not late.promoted and late.champion_version == "2"
    assert "champion moved by" in late.reason and "(promote) meanwhile" in late.reason
    assert alias_version(name, "champion") == "2"
    undo_registration(fourth, late)  # the run fails after all: v4 goes, champion v2 stays
    assert alias_version(name, "champion") == "2" and versions() == {"1", "2"}

    # Someone promotes a running run's version by hand, then that run fails: undo keeps the version (an
    # alias points at it; deleting it would drop the champion) and tags it failed.
    fifth = register_model(recipe, trained[5], evaluation("candidate", 0.99), run_id)
    assert main(["promote", name, fifth.version, "--reason", "hotfix", "--force"]) == 0
    undo_registration(fifth, None, "RuntimeError: parity crashed")
    assert alias_version(name, "champion") == fifth.version and fifth.version in versions()
    assert alias_version(name, "candidate") == "2"
    assert (
        client.get_model_version(name, fifth.version).tags["llmpath.failed"] == "RuntimeError: parity crashed"
    )

    moves = aliases.history(name)
    assert [(m.action, m.from_version, m.to_version) for m in moves] == [
        ("gate", None, "1"),
        ("gate", "1", "3"),
        ("undo", "3", "1"),
        ("promote", "1", "2"),
        ("rollback", "2", "1"),
        ("promote", "1", "2"),
        ("promote", "2", fifth.version),
    ]
    assert all(a.to_version == b.from_version for a, b in zip(moves, moves[1:], strict=False))
    assert moves[3].why == "operator override" and moves[3].who
    assert moves[0].metrics["eval.accuracy"] == pytest.approx(0.8)
    capsys.readouterr()
    assert main(["history", name]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert (
        printed[0].startswith("when (UTC)")
        and "hotfix" in printed[-1]
        and f"v2 -> v{fifth.version}" in printed[-1]
    )
    # No lock is left behind on the model.
    assert "llmpath.lock" not in client.get_registered_model(name).tags
