"""The tool-calling smoke recipe through the whole `chat` flow with the packaged SmolLM2 (glaive's function-call
chats, call_accuracy on held-out calls), then the packaged Bento answering a `tools` request from the `openai`
client over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.chat import chat
from tests.conftest import smoke_run

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


def test_the_packaged_candidate_answers_tool_requests_in_openais_shape(pipeline, tmp_path_factory):
    """The smoke candidate packaged by version (`build_bento(recipe, version)`: 4 steps rarely beat the base, so
    the gate may refuse it) and served as any Bento: a request forcing the tool comes back from the `openai`
    client as a call or as text, never an error, and the stream says exactly what the JSON answer says."""
    import sys

    from openai import OpenAI

    from tasks.package import build_bento
    from tests.conftest import serving

    recipe, summary, _ = pipeline
    bento = build_bento(recipe, summary["candidate"]).tag
    log = tmp_path_factory.mktemp("toolcall-serve") / "serve.log"
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    with serving([bentoml, "serve", bento, "--host", "127.0.0.1"], log, timeout=120) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="local", max_retries=0)
        request = {
            "model": "llmpath-chat",
            "messages": [{"role": "user", "content": "What is the exchange rate from US dollars to euros?"}],
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_exchange_rate"}},
            "max_tokens": 48,
            "temperature": 0,
        }
        choice = client.chat.completions.create(**request).choices[0]
        streamed = {"content": "", "name": "", "arguments": "", "finish": None}
        for chunk in client.chat.completions.create(**request, stream=True):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            streamed["content"] += delta.content or ""
            for call in delta.tool_calls or []:
                streamed["name"] += call.function.name or ""
                streamed["arguments"] += call.function.arguments or ""
            streamed["finish"] = chunk.choices[0].finish_reason or streamed["finish"]
        assert streamed["finish"] == choice.finish_reason
        if choice.finish_reason == "tool_calls":
            call = choice.message.tool_calls[0]
            arguments = json.loads(call.function.arguments)
            assert call.function.name == "get_exchange_rate" and isinstance(arguments, dict)
            assert {"base_currency", "target_currency"} <= set(arguments)  # the schema's required keys
            assert (streamed["name"], json.loads(streamed["arguments"])) == (call.function.name, arguments)
        else:  # the call did not parse or failed the schema: returned as text, the same in the stream
            assert choice.message.content and not choice.message.tool_calls
            assert streamed["content"] == choice.message.content
