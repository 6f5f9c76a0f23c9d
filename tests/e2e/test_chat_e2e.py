"""The chat smoke recipe through the whole `chat` flow with the packaged SmolLM2, then its Bento served by
`llmpath serve chat` (`bentoml serve`) answering OpenAI-style requests over real HTTP, streaming and not."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from flows.chat import chat
from tests.conftest import llmpath_serve, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": "Name three primary colors."}]


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    with smoke_run(chat, "chat-alpaca-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_tunes_gates_exports_and_packages(pipeline):
    import bentoml
    import mlflow

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    assert run.info.status == "FINISHED"
    m, tags = run.data.metrics, run.data.tags
    assert m["data.train_rows"] == 180 and m["data.validation_rows"] == 20
    # 12 LoRA steps on real Alpaca rows: lower assistant loss, and better answers than the base by ROUGE-L.
    assert m["candidate.loss"] < m["base.loss"] and m["candidate.perplexity"] < m["base.perplexity"]
    assert m["candidate.rouge_l"] > m["base.rouge_l"]
    # eos = pad = <|im_end|> and the answers' <|im_end|> is labelled: the tuned model still ends its answers.
    assert m["candidate.stopped_share"] > 0 and m["candidate.stopped_share"] >= m["base.stopped_share"] - 0.25
    assert summary["champion"] == summary["candidate"] == "1"
    # ORT fp32 with KV cache keeps PyTorch's greedy tokens; the int8 weight-only form was measured too.
    assert m["parity.fp32.top1_agreement"] >= 0.99 and m["parity.fp32.identical"] >= 0.8
    assert {"parity.int8-weight.top1_agreement", "parity.int8-weight.tokens_per_second"} <= set(m)
    shipped = tags["deployable.form"]
    assert m[f"parity.{shipped}.top1_agreement"] >= recipe.export.min_agreement
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {
        "eval/base_answers.json",
        "eval/candidate_answers.json",
        "eval/base_vs_candidate.json",
    } <= artifacts
    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["form"] == shipped and bento.info.labels["version"] == "1"
    # Its own service, even when another Bento (another kind) was built earlier in this process.
    assert [svc.name for svc in bento.info.services] == ["llmpath-chat"]
    print(f"chat smoke flow: {seconds:.0f}s, rouge_l {m['base.rouge_l']:.3f} -> {m['candidate.rouge_l']:.3f}")


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    with llmpath_serve(
        "chat", tmp_path_factory, timeout=180
    ) as base:  # the last built chat Bento: this run's
        yield base


def test_openai_client_json_and_stream_give_the_same_greedy_answer(server, pipeline):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="local")
    reply = client.chat.completions.create(model="llmpath-chat", messages=QUESTION, max_tokens=40)
    text = reply.choices[0].message.content
    assert len(text.split()) >= 3 and reply.usage.completion_tokens <= 40
    chunks = client.chat.completions.create(
        model="llmpath-chat", messages=QUESTION, max_tokens=40, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) > 3  # it streamed token by token, not one block
    assert "".join(pieces) == text


def test_raw_sse_and_multi_turn(server):
    turns = QUESTION + [
        {"role": "assistant", "content": "Red, blue and yellow."},
        {"role": "user", "content": "Which of them is warm?"},
    ]
    with httpx.stream(
        "POST",
        f"{server}/v1/chat/completions",
        json={"messages": turns, "max_tokens": 24, "stream": True},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


def test_generate_and_limits(server):
    body = httpx.post(f"{server}/generate", json={"prompt": "Say hello.", "max_new_tokens": 16}, timeout=120)
    assert body.status_code == 200 and body.json()["tokens"] <= 16 and body.json()["text"]
    too_many = httpx.post(
        f"{server}/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 100_000}, timeout=60
    )
    assert 400 <= too_many.status_code < 500
    long = [{"role": "user", "content": "word " * 1500}]  # over max_input_tokens (1024)
    assert (
        400
        <= httpx.post(f"{server}/v1/chat/completions", json={"messages": long}, timeout=60).status_code
        < 500
    )
    info = httpx.post(f"{server}/model", json={}, timeout=30).json()
    assert info["alias"] == "champion" and info["version"] == "1"
