"""Tool calling through the chat Bento under a real `bentoml serve`, driven by the `openai` client: a tiny Llama
(built from a config) is overfit on a rendered tool conversation so that it really emits a call, exported to
ONNX with KV cache and served. The call comes back as `tool_calls` (JSON and streamed), a `tool` message gets
the answer, and a call that fails its schema is returned as text, never a 500."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import make_tiny_llama, serve_tiny_chat

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USER = {"role": "user", "content": "Weather in Oslo?"}
CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}
ANSWER = "It is 3 degrees."


def _conversation() -> list[dict]:
    from bentos.chat.tools import check_tools

    return [
        USER | {"tools": check_tools([TOOL])},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": ANSWER},
    ]


@pytest.fixture(scope="module")
def tool_model(smollm2_tokenizer, tmp_path_factory) -> str:
    """A 2-layer, 64-dim Llama overfit (all weights, 150 steps) on one tool conversation rendered as the
    chat kind renders training data; exported to ONNX and put in the BentoML store. Its tag."""
    import bentoml
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    from llmpath.chat import pad_batch, render

    model = make_tiny_llama(smollm2_tokenizer, hidden=64)
    batch = pad_batch([render(smollm2_tokenizer, _conversation(), 512)], smollm2_tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, loss.item()  # it has learned the call and the answer by heart
    work = tmp_path_factory.mktemp("tool-chat")
    model.save_pretrained(work / "model", safe_serialization=True)
    ORTModelForCausalLM.from_pretrained(work / "model", export=True, use_cache=True).save_pretrained(
        work / "onnx"
    )
    smollm2_tokenizer.save_pretrained(work / "onnx")
    with bentoml.models.create(
        "tiny-tool-chat-onnx", labels={"registered_model": "tiny-tool-chat"}
    ) as stored:
        shutil.copytree(work / "onnx", stored.path, dirs_exist_ok=True)
    return str(stored.tag)


@pytest.fixture(scope="module")
def client(tool_model, tmp_path_factory):
    from openai import OpenAI

    with serve_tiny_chat(tool_model, tmp_path_factory) as base:
        yield OpenAI(base_url=f"{base}/v1", api_key="not-needed-locally", max_retries=0)


def test_a_call_comes_back_as_tool_calls_in_json_and_in_the_stream(client):
    reply = client.chat.completions.create(
        model="llmpath-chat", messages=[USER], tools=[TOOL], max_tokens=48, temperature=0
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}

    stream = client.chat.completions.create(
        model="llmpath-chat", messages=[USER], tools=[TOOL], max_tokens=48, temperature=0, stream=True
    )
    names, arguments, reasons, content = [], "", [], ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for part in delta.tool_calls or []:
            assert part.index == 0
            names += [part.function.name] if part.function.name else []
            arguments += part.function.arguments or ""
        reasons += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert (names, json.loads(arguments), reasons, content) == (
        ["get_weather"],
        {"city": "Oslo"},
        ["tool_calls"],
        "",
    )


def test_the_tool_result_goes_back_as_a_tool_message_and_gets_the_answer(client):
    first = client.chat.completions.create(model="llmpath-chat", messages=[USER], tools=[TOOL], max_tokens=48)
    call = first.choices[0].message.tool_calls[0]
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 3}'},
    ]
    reply = client.chat.completions.create(
        model="llmpath-chat", messages=messages, tools=[TOOL], max_tokens=24
    )
    assert reply.choices[0].message.content == ANSWER and reply.choices[0].finish_reason == "stop"
    assert not reply.choices[0].message.tool_calls


def test_a_call_that_fails_the_schema_or_is_switched_off_is_text(client):
    strict = json.loads(json.dumps(TOOL))
    strict["function"]["parameters"]["properties"]["city"] = {"type": "integer"}  # "Oslo" no longer fits
    reply = client.chat.completions.create(
        model="llmpath-chat", messages=[USER], tools=[strict], max_tokens=48
    )
    choice = reply.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason == "stop"
    assert choice.message.content.startswith('<tool_call>{"name": "get_weather"')  # what the model said
    off = client.chat.completions.create(
        model="llmpath-chat", messages=[USER], tools=[TOOL], tool_choice="none", max_tokens=8
    )
    assert not off.choices[0].message.tool_calls and off.choices[0].finish_reason in {"stop", "length"}


def test_forced_and_named_tool_choice_and_bad_tools_through_the_client(client):
    import openai

    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(
            model="llmpath-chat", messages=[USER], tools=[TOOL], tool_choice=choice, max_tokens=48
        )
        assert reply.choices[0].finish_reason == "tool_calls"
        assert json.loads(reply.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    bad = [
        {"tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]},
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "launch"}}},
        {"tool_choice": "required"},
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_x", "content": "{}"}]},
    ]
    for change in bad:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(**({"model": "llmpath-chat", "messages": [USER]} | change))
        assert err.value.status_code == 400 and err.value.body["param"] in {
            "tools[0].function.name",
            "tool_choice",
            "messages",
        }
