"""The chat service under a real `bentoml serve`, on a tiny random Llama exported to ONNX: OpenAI-style chat
completions as JSON and as server-sent events, `/generate`, and 4xx for bad requests."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import bentoml_serve, serve_tiny_chat

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHAT = [{"role": "user", "content": "The light is red. What do I do?"}]


@pytest.fixture(scope="module")
def server(tiny_chat_model, tmp_path_factory):
    with serve_tiny_chat(tiny_chat_model, tmp_path_factory) as base:
        yield base


def test_chat_completions_json_and_stream_agree(server):
    request = {"model": "llmpath-chat", "messages": CHAT, "max_tokens": 8, "temperature": 0}
    answer = httpx.post(f"{server}/v1/chat/completions", json=request, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    text = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert (
        body["usage"]["prompt_tokens"] > 10
        and body["usage"]["total_tokens"] >= body["usage"]["prompt_tokens"]
    )

    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=request | {"stream": True}, timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == text  # greedy: the same answer, in pieces
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]

    generated = httpx.post(f"{server}/generate", json={"prompt": CHAT[0]["content"], "max_new_tokens": 8})
    assert generated.status_code == 200 and generated.json()["text"] == text


@pytest.mark.parametrize(
    "change",
    [
        {"messages": []},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"max_tokens": 100000},
        {"temperature": -1},
        {"top_p": 0},
        {"messages": [{"role": "user", "content": "word " * 1500}]},  # over the input-token limit
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_answering(server, change):
    request = {"messages": CHAT, "max_tokens": 4} | change
    bad = httpx.post(f"{server}/v1/chat/completions", json=request, timeout=60)
    assert 400 <= bad.status_code < 500, bad.text
    assert httpx.post(f"{server}/generate", json={"prompt": "hi", "max_new_tokens": 2}).status_code == 200


def test_the_openai_client_works_against_it(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="not-needed-locally")
    reply = client.chat.completions.create(model="llmpath-chat", messages=CHAT, max_tokens=6, temperature=0)
    text = reply.choices[0].message.content
    assert reply.choices[0].message.role == "assistant" and reply.usage.prompt_tokens > 10
    stream = client.chat.completions.create(
        model="llmpath-chat", messages=CHAT, max_tokens=6, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == text


def test_stop_strings_end_the_answer_in_json_and_in_the_stream(server):
    request = {"messages": CHAT, "max_tokens": 16, "temperature": 0}
    text = httpx.post(f"{server}/v1/chat/completions", json=request, timeout=60).json()["choices"][0]
    text = text["message"]["content"]
    assert len(text) >= 6, text  # a random model still emits 16 tokens of something
    stop = text[3:6]
    expected = text[: text.index(stop)]
    body = httpx.post(f"{server}/v1/chat/completions", json=request | {"stop": [stop]}, timeout=60).json()
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": expected},
        "finish_reason": "stop",
    }
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=request | {"stop": stop, "stream": True}
    ) as r:
        chunks = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected


def test_the_service_runs_from_a_bento_folder(tiny_chat_model, tmp_path_factory):
    """As packaged: service.py beside its runtime and the shared guard (`import guard` finds the copy), served
    from that folder."""
    import shutil

    from llmpath.recipes import kind_named
    from tasks.package import service_files

    bento = kind_named("chat").family.bento
    service_class = bento.service_class
    src = tmp_path_factory.mktemp("chat-bento-src")
    for name, path in service_files(bento).items():
        shutil.copy2(path, src / name)
    env = {"LLMPATH_CHAT_MODEL": tiny_chat_model}
    with bentoml_serve(f"service:{service_class}", env, src / "serve.log", cwd=src) as base:
        answer = httpx.post(
            f"{base}/v1/chat/completions", json={"messages": CHAT, "max_tokens": 3}, timeout=60
        )
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3
        refused = httpx.post(
            f"{base}/v1/chat/completions",
            content=b"\x80\x04.",
            headers={"content-type": "application/vnd.bentoml+pickle"},
        )
        assert refused.status_code == 415 and refused.json()["error"]["type"] == "invalid_request_error"
