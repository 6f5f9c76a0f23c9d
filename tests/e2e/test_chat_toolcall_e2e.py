"""The tool-calling smoke recipe through the whole `chat` flow with the packaged SmolLM2 (glaive's function-call
chats, call_accuracy on held-out calls), then the packaged Bento answering a `tools` request from the `openai`
client over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.chat import chat
from tests.conftest import llmpath_serve, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_exchange_rate",
        "description": "Get the exchange rate between two currencies",
        "parameters": {
            "type": "object",
            "properties": {"base_currency": {"type": "string"}, "target_currency": {"type": "string"}},
            "required": ["base_currency", "target_currency"],
        },
    },
}


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    with smoke_run(chat, "chat-toolcall-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_scores_held_out_calls_for_base_and_candidate(pipeline):
    import mlflow

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    for name in ("base", "candidate"):
        assert m[f"{name}.call_prompts"] == recipe.eval.max_prompts
        assert 0 <= m[f"{name}.call_accuracy"] <= m[f"{name}.function_accuracy"] <= 1
    assert m["candidate.loss"] < m["base.loss"]  # 4 steps on calls and answers already lower their loss
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="eval/candidate/answers.json"
    )
    answers = json.loads(Path(path).read_text())
    assert all(
        {"reference", "answer", "valid_call", "correct", "prompt_ids", "answer_ids"} <= set(a)
        for a in answers
    )
    assert all(json.loads(a["reference"])["name"] for a in answers)
    print(
        f"toolcall smoke flow: {seconds:.0f}s, call_accuracy {m['base.call_accuracy']:.3f} -> "
        f"{m['candidate.call_accuracy']:.3f}, champion {summary.get('champion')}"
    )


def test_the_served_champion_answers_tool_requests_in_openais_shape(pipeline, tmp_path_factory):
    from openai import OpenAI

    _, summary, _ = pipeline
    if not summary.get("champion"):
        pytest.skip("the smoke candidate did not beat the base on call_accuracy: no champion to serve")
    with llmpath_serve("chat", tmp_path_factory) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="local", max_retries=0)
        question = {"role": "user", "content": "What is the exchange rate from US dollars to euros?"}
        reply = client.chat.completions.create(
            model="llmpath-chat", messages=[question], tools=[TOOL], max_tokens=48
        )
        choice = reply.choices[0]
        if choice.finish_reason == "tool_calls":
            call = choice.message.tool_calls[0]
            assert call.function.name == "get_exchange_rate" and isinstance(
                json.loads(call.function.arguments), dict
            )
        else:  # the smoke model wrote text (or a call that failed the schema): returned as content, not an error
            assert choice.message.content is not None and not choice.message.tool_calls
