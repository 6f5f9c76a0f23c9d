"""What the MLflow UI shows for a recipe's runs: a tiny BERT through the real classify flow twice (the second
served from the cache) on a temp store, read back as the UI reads it. Then a run that fails after its form was
logged leaves neither the version nor its logged form behind."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from flows.classify import classify
from llmpath.links import model_id_of
from llmpath.recipes import parse_recipe
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.integration
NAME, MODEL = "mlui", "mlui-classifier"


def latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> str:
        async with get_client() as api:
            found = await api.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            return found[0].data if found else ""

    return asyncio.run(read())


def contexts(run) -> dict:
    """Input context -> dataset, as the UI's Datasets column lists them."""
    return {
        t.value: i.dataset
        for i in run.inputs.dataset_inputs
        for t in i.tags
        if t.key == "mlflow.data.context"
    }


def test_two_runs_of_a_recipe_as_the_mlflow_ui_shows_them(
    prefect_harness, home, tmp_path, monkeypatch, tiny_bert, capsys
):
    import mlflow
    import mlflow.onnx

    from llmpath.cli import main

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(data))
    raw = tiny_recipe(data, tiny_bert, name=NAME)
    recipe = parse_recipe(raw)
    first, second = classify(recipe), classify(recipe)
    client = mlflow.MlflowClient()
    one, two = client.get_run(first["mlflow run"]), client.get_run(second["mlflow run"])
    experiment = one.info.experiment_id

    # Distinct, readable run names: the Prefect flow run's, starting with the recipe's name.
    assert one.info.run_name != two.info.run_name
    for run in (one, two):
        assert run.info.run_name.startswith(NAME)
        assert run.data.tags["prefect.flow_run_name"] in run.info.run_name

    # Training and validation data are dataset inputs, named under the data root; the cached re-run has them too.
    for run in (one, two):
        found = contexts(run)
        assert {c: (d.name, d.source_type, json.loads(d.source)) for c, d in found.items()} == {
            "training": ("train.tsv", "local", {"uri": "train.tsv"}),
            "validation": ("dev.tsv", "local", {"uri": "dev.tsv"}),
        }
        assert json.loads(found["training"].profile)["num_rows"] == 160
    digests = {c: d.digest for c, d in contexts(one).items()}
    assert digests == {c: d.digest for c, d in contexts(two).items()} and len(set(digests.values())) == 2

    # The merged model says how it is called: a signature and a validation text as its input example.
    version = client.get_model_version(MODEL, "1")
    model_uri = version.tags["model_uri"]
    info = mlflow.models.get_model_info(model_uri)
    assert (
        info.signature is not None and info.saved_input_example_info["artifact_path"] == "input_example.json"
    )
    example = mlflow.artifacts.load_text(
        f"{client.get_logged_model(model_id_of(model_uri)).artifact_location}/input_example.json"
    )
    assert json.loads(example)[0] in (data / "dev.tsv").read_text()

    # The shipped ONNX form is a logged model (onnx flavour) that names the version, and the version names it.
    onnx_uri = version.tags["deployable.model_uri"]
    onnx = client.get_logged_model(model_id_of(onnx_uri))
    assert onnx.model_type == "onnx" and onnx.source_run_id == one.info.run_id
    assert (
        onnx.tags["registered_version"] == "1"
        and onnx.tags["deployable.form"] == version.tags["deployable.form"]
    )
    assert json.loads(onnx.tags["mlflow.modelVersions"]) == [{"name": MODEL, "version": 1}]
    assert "input_ids" in {i.name for i in mlflow.onnx.load_model(onnx_uri).graph.input}
    assert onnx.model_id in {o.model_id for o in one.outputs.model_outputs}
    models = client.search_logged_models([experiment])
    assert [m.model_id for m in models if m.model_type == "onnx"] == [onnx.model_id]  # the re-run logged none

    # Metrics belong to the right model: base scores to the base's logged model, never to the candidate.
    candidate = {m.key for m in client.get_logged_model(model_id_of(model_uri)).metrics}
    (base,) = [m for m in models if m.tags.get("llmpath.role") == "base"]
    assert "candidate.accuracy" in candidate and not any(k.startswith("base.") for k in candidate)
    assert "base.accuracy" in {m.key for m in base.metrics}
    assert not any(m.key.startswith("candidate.") for m in base.metrics)
    # ... and the three gate scores are run metrics of every run (champion: once there is one).
    assert {
        "base.accuracy",
        "candidate.accuracy",
    } <= one.data.metrics.keys() and "champion.accuracy" not in one.data.metrics
    assert {"base.accuracy", "candidate.accuracy", "champion.accuracy"} <= two.data.metrics.keys()

    # The cached re-run names the run and the model it reused.
    tags = two.data.tags
    assert tags["reused.finetune.run_id"] == one.info.run_id and tags["reused.finetune.uri"] == model_uri
    assert tags["reused.prepare_data.run_id"] == one.info.run_id
    assert model_id_of(model_uri) in {m.model_id for m in two.inputs.model_inputs}

    # Descriptions: the Prefect flow run (a link: the test API is a server) and the Bento tag.
    for run, summary in ((one, first), (two, second)):
        note = client.get_run(run.info.run_id).data.tags["mlflow.note.content"]
        assert f"/runs/flow-run/{run.data.tags['prefect.flow_run_id']})" in note
        assert f"`{summary['bento']}`" in note
    assert f"finetune: run [{one.info.run_id[:8]}]" in two.data.tags["mlflow.note.content"]
    described = client.get_model_version(MODEL, "1").description
    assert f"`{second['bento']}`" in described and two.data.tags["prefect.flow_run_id"] in described
    assert onnx_uri in described

    # The summary artifact is per recipe and links the run and version pages.
    summary = latest_artifact(f"summary-{NAME}")
    assert f"#/experiments/{experiment}/runs/{two.info.run_id})" in summary
    assert f"#/models/{MODEL}/versions/1)" in summary and second["bento"] in summary

    # `llmpath compare`: base, candidate and champion of each run, and a chart.
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    chart = tmp_path / "compare.png"
    capsys.readouterr()
    assert main(["compare", str(path), "--chart", str(chart)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[4:7] == ["base.accuracy", "candidate.accuracy", "champion.accuracy"]
    rows = [
        line.split() for line in lines[1:3]
    ]  # name, date, time, status, version, base, candidate, champion
    assert [r[0] for r in rows] == [one.info.run_name, two.info.run_name]
    assert [r[-1] for r in rows] == ["promoted", "kept"]  # the re-run's candidate is already the champion
    assert (
        float(rows[1][7]) == pytest.approx(two.data.metrics["champion.accuracy"], abs=1e-4)
        and rows[0][7] == "-"
    )
    assert "compare-runs?runs=" in lines[3] and chart.read_bytes()[:4] == b"\x89PNG"


def test_a_failed_run_leaves_no_logged_form_of_its_removed_version(home, tmp_path, monkeypatch, tiny_bert):
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.data import prepare
    from tasks.evaluate import score_candidate
    from tasks.export import check_parity, export_version
    from tasks.registry import mark_deployable_version, register_model
    from tasks.runs import pipeline_run
    from tasks.train import train

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    recipe = parse_recipe(
        tiny_recipe(tmp_path, tiny_bert, name="mlui-fail", rows=(64, 32), train={"epochs": 1})
    )
    logged = {}
    with pytest.raises(RuntimeError, match="packaging broke"), pipeline_run(recipe) as run:
        data = prepare(recipe, run.run_id)
        trained = train(recipe, data, run.run_id)
        candidate = score_candidate(recipe, data, trained, run.run_id)
        run.registration = register_model(recipe, trained, candidate, run.run_id)
        exported = export_version(recipe, trained, run.run_id)
        checked = check_parity(recipe, data, exported, candidate, run.run_id)
        mark_deployable_version(run.registration, exported, checked, run.run_id)
        tags = mlflow.MlflowClient().get_model_version("mlui-fail-classifier", "1").tags
        logged["uri"] = tags["deployable.model_uri"]
        raise RuntimeError("packaging broke")
    client = mlflow.MlflowClient()
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert client.search_registered_models("name='mlui-fail-classifier'") == []
    with pytest.raises(MlflowException):
        client.get_logged_model(model_id_of(logged["uri"]))
