"""The rag smoke recipe through the whole `rag` flow on the real SQuAD article, with the packaged MiniLM
(ONNX) and SmolLM2; then its Bento served by `llmpath serve rag` (`bentoml serve`) answering /search and /ask
over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from flows.rag import rag
from tests.conftest import llmpath_serve, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
QUESTION = (
    "Which NFL team represented the AFC at Super Bowl 50?"  # SQuAD dev: gold paragraph 0 of the article
)


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    with smoke_run(rag, "rag-squad-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_indexes_gates_and_packages(pipeline):
    import bentoml
    import mlflow

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    m = run.data.metrics
    assert run.info.status == "FINISHED"
    assert (
        m["corpus.documents"] == 54 and m["corpus.questions"] == 810 and m["index.rows"] == m["corpus.chunks"]
    )
    assert m["embedder.onnx_min_cosine"] >= recipe.index.min_cosine
    # MiniLM finds the gold paragraph in the top 5 for most SQuAD questions, and HNSW loses nothing to exact
    # search on this corpus.
    assert m["retrieval.recall_at_5"] >= recipe.eval.floor and m["retrieval.recall_at_10"] >= 0.9
    assert m["retrieval.recall_at_1"] <= m["retrieval.recall_at_5"] <= m["retrieval.recall_at_10"]
    assert m["retrieval.recall_ratio_at_10"] >= 0.99 and m["retrieval.exact.recall_at_5"] >= 0.8
    # With the passages SmolLM2 answers better than closed-book (token F1 on the sampled questions).
    assert m["qa.questions"] == recipe.ask.sample
    assert m["qa.rag.f1"] > m["qa.closed_book.f1"]
    answers = client.load_table(run.info.experiment_id, "eval/answers.json", [run.info.run_id])
    assert len(answers) == recipe.ask.sample and answers["reference"].str.len().min() > 0
    assert summary["champion"] == "1"
    version = client.get_model_version_by_alias(recipe.registered_model, "champion")
    assert version.tags["collection"] == summary["index collection"]
    bento = bentoml.get(summary["bento"])
    assert [svc.name for svc in bento.info.services] == ["llmpath-rag"]
    print(
        f"rag smoke flow: {seconds:.0f}s, recall@5 {m['retrieval.recall_at_5']:.3f}, F1 {m['qa.rag.f1']:.3f}"
    )


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    with llmpath_serve("rag", tmp_path_factory, timeout=120) as base:
        yield base


def test_search_returns_chunks_scores_and_sources(server, pipeline):
    r = httpx.post(f"{server}/search", json={"query": QUESTION, "k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    hits = body["results"]
    assert len(hits) == 5 and body["collection"] == pipeline[1]["index collection"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["doc_id"] == "dev-v1.1.json#0.0" and "Denver Broncos" in hits[0]["text"]
    assert {"id", "text", "source", "doc_id", "title", "position"} <= set(hits[0])
    # Metadata filters: only chunks of the named paragraph come back.
    r = httpx.post(
        f"{server}/search",
        json={"query": QUESTION, "k": 5, "filters": {"doc_id": "dev-v1.1.json#0.3"}},
        timeout=60,
    )
    assert r.status_code == 200 and {h["doc_id"] for h in r.json()["results"]} == {"dev-v1.1.json#0.3"}


def test_ask_answers_from_the_retrieved_passages(server):
    r = httpx.post(f"{server}/ask", json={"question": QUESTION, "k": 3}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "Broncos" in body["answer"]
    search = httpx.post(f"{server}/search", json={"query": QUESTION, "k": 3}, timeout=60).json()["results"]
    assert body["passages"] == [h["id"] for h in search]  # the passages it used are the top-3 search hits
    assert body["sources"][0]["doc_id"] == "dev-v1.1.json#0.0"


@pytest.mark.parametrize(
    "route, payload",
    [
        ("search", {"query": ""}),
        ("search", {"query": "x", "k": 0}),
        ("search", {"query": "x", "k": 1000}),
        ("search", {"query": "x" * 5000}),
        ("search", {"query": "x", "filters": {"vector": "1"}}),
        ("ask", {"question": "x", "max_new_tokens": 100000}),
        ("ask", {"k": 2}),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, route, payload):
    r = httpx.post(f"{server}/{route}", json=payload, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    again = httpx.post(f"{server}/search", json={"query": "Super Bowl", "k": 1}, timeout=60)
    assert again.status_code == 200 and len(again.json()["results"]) == 1


def test_model_reports_the_index_it_serves(server, pipeline):
    body = httpx.post(f"{server}/model", json={}, timeout=30).json()
    assert body["collection"] == pipeline[1]["index collection"] and body["version"] == "1"
    assert body["record"]["embedder"] == "packaged:all-minilm-l6-v2" and body["record"]["dim"] == 384
