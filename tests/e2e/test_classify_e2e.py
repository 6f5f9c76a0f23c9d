"""The smoke recipe through the whole `classify` flow, then its Bento served by `bentoml serve` over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flows.classify import classify
from tests.conftest import llmpath_serve, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    """Run the smoke recipe once; the tests below read what it left in MLflow and BentoML."""
    with smoke_run(classify, "classify-sst2-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_registers_promotes_exports_and_packages(pipeline):
    import bentoml
    import mlflow

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    # Real training on real SST-2 rows moves accuracy well above the untrained head.
    assert metrics["candidate.accuracy"] >= 0.65
    assert metrics["candidate.accuracy"] > metrics["base.accuracy"] + 0.05
    assert metrics["data.train_rows"] == 1600 and metrics["data.validation_rows"] == 400
    assert abs(metrics["parity.int8.accuracy_drop"]) <= recipe.export.max_accuracy_drop
    assert summary["champion"] == "1" and summary["candidate"] == "1"
    version = client.get_model_version_by_alias(recipe.registered_model, "champion")
    assert version.tags["deployable.form"] in {"int8", "fp32"}
    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["registered_model"] == recipe.registered_model
    assert bento.info.labels["version"] == "1"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/loss.png"}
    print(f"smoke flow: {seconds:.0f}s, candidate accuracy {metrics['candidate.accuracy']:.3f}")


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    with llmpath_serve("classifier", tmp_path_factory) as base:  # the last built Bento: this run's
        yield base


def test_classify_endpoint_answers(server):
    texts = ["a gripping , funny and deeply moving film .", "a dull , lifeless and tedious mess ."]
    response = httpx.post(f"{server}/classify", json={"texts": texts}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert [r["label"] for r in body] == ["positive", "negative"]
    assert all(0.5 < r["score"] <= 1.0 for r in body)


def test_unchanged_champion_is_not_repackaged(pipeline):
    import bentoml

    from tasks.package import build_bento

    recipe, summary, _ = pipeline
    again = build_bento(recipe)
    assert again.tag == summary["bento"] and again.version == "1"
    assert again.model_tag == str(bentoml.get(summary["bento"]).info.models[0].tag)
    assert len(bentoml.list(recipe.serve.bento_name)) == 1


def test_reports_are_published_to_prefect(pipeline):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def latest(key):
        # Other flows of this session (chat, rag) publish the same keys: newest first, explicitly (the
        # server's default order is by id, which is random).
        async with get_client() as api:
            found = await api.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            return found[0].data if found else ""

    _, summary, _ = pipeline
    assert "| train | 1600 |" in asyncio.run(latest("classify-sst2-smoke-data-report"))
    assert summary["bento"] in asyncio.run(latest("summary-classify-sst2-smoke"))  # one key per recipe


def test_health_and_metrics(server):
    assert httpx.get(f"{server}/healthz").status_code == 200
    assert httpx.get(f"{server}/readyz").status_code == 200
    metrics = httpx.get(f"{server}/metrics").text
    assert "bentoml_service_request_duration_seconds" in metrics
    info = httpx.post(f"{server}/model", json={}).json()
    assert info["alias"] == "champion" and info["version"] == "1"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"texts": []}, "at least 1 item"),
        ({"texts": ["ok"] * 65}, "at most 64 items"),
        ({"texts": ["x" * 2001]}, "at most 2000 characters"),
        ({"texts": [""]}, "at least 1 character"),
        ({"text": "no texts field"}, "texts"),
        ({"texts": [1, 2]}, "valid string"),
    ],
)
def test_bad_requests_get_4xx_with_reason(server, payload, fragment):
    response = httpx.post(f"{server}/classify", json=payload, timeout=30)
    assert 400 <= response.status_code < 500
    assert fragment in response.text


def test_bad_json_is_4xx_and_server_survives(server):
    response = httpx.post(
        f"{server}/classify", content=b"{not json", headers={"content-type": "application/json"}, timeout=30
    )
    assert 400 <= response.status_code < 500
    assert httpx.post(f"{server}/classify", json={"texts": ["still alive"]}, timeout=30).status_code == 200
