"""The extractive-QA smoke recipe through the whole `qa` flow with the packaged all-MiniLM-L6-v2 on the SQuAD
subset (paragraphs held out whole, EM/F1 with SQuAD's normalization, ONNX parity span by span), then
`llmpath serve qa` answering `POST /answer` over real HTTP, for ordinary and for bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.qa import qa
from tests.conftest import llmpath_serve, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    with smoke_run(qa, "qa-squad-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_holds_out_paragraphs_scores_both_models_and_checks_the_forms(pipeline):
    import mlflow
    import pandas as pd

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["data.train_rows"] == recipe.data.max_train_rows
    assert m["data.validation_rows"] == recipe.data.max_validation_rows
    data = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data"))
    train = pd.read_parquet(data / "train.parquet")
    validation = pd.read_parquet(data / "validation.parquet")
    assert set(train["context"]).isdisjoint(validation["context"])  # no held-out paragraph is trained on
    for name in ("base", "candidate"):
        assert 0 <= m[f"{name}.exact_match"] <= m[f"{name}.f1"] <= 1
    assert m["candidate.f1"] > m["base.f1"]  # 10 steps from the seeded span head already find spans
    assert m["parity.fp32.agreement"] == 1.0 and "parity.int8.agreement" in m
    assert summary["champion"] == summary["candidate"]
    version = client.get_model_version(recipe.registered_model, summary["champion"])
    assert version.tags["deployable.form"] in {"fp32", "int8"}
    print(
        f"qa smoke flow: {seconds:.0f}s, F1 {m['base.f1']:.3f} -> {m['candidate.f1']:.3f}, "
        f"EM {m['base.exact_match']:.3f} -> {m['candidate.exact_match']:.3f}, "
        f"ships {version.tags['deployable.form']}"
    )


def test_the_served_champion_answers_with_a_span_of_the_context_and_refuses_bad_requests(
    pipeline, tmp_path_factory
):
    import httpx

    _, summary, _ = pipeline
    context = (
        "Super Bowl 50 was an American football game to determine the champion of the National Football "
        "League (NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos "
        "defeated the National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their "
        "third Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in Santa Clara."
    )
    with llmpath_serve("qa", tmp_path_factory) as base, httpx.Client(base_url=base, timeout=60) as http:
        info = http.post("/model", json={}).json()
        assert info["version"] == summary["champion"]
        reply = http.post("/answer", json={"question": "Where was the game played?", "context": context})
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert set(got) >= {"answer", "score", "start", "end"}
        assert got["answer"] and context[got["start"] : got["end"]] == got["answer"]  # offsets index the text
        assert 0 < got["score"] <= 1
        for body in (
            {"question": "", "context": context},
            {"question": "Where?", "context": 7},
            {"question": "Where?"},
        ):
            bad = http.post("/answer", json=body)
            assert bad.status_code == 400, (body, bad.status_code, bad.text)
            assert json.loads(bad.text)  # a JSON reason, not a traceback
        not_json = http.post("/answer", content=b"question=x", headers={"content-type": "text/plain"})
        assert 400 <= not_json.status_code < 500
