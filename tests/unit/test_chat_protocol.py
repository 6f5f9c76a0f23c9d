"""The chat Bento's OpenAI protocol as pure logic: what a request means, and how a refusal names its field.
(The same rules over real HTTP are in tests/reliability/test_chat_hostile.py.)"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bentos.chat.openai_api import NO_OP, ChatRequest, OpenAIError, install_errors

pytestmark = pytest.mark.unit
USER = {"role": "user", "content": "hi"}


def test_openai_aliases_and_defaults_become_one_sampling():
    request = ChatRequest(
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ],
        max_completion_tokens=7,
        stop="END",
        temperature=None,
    )
    s = request.sampling()
    assert (s.max_tokens, s.stop, s.temperature, s.top_p, s.seed) == (7, ["END"], 0.0, 1.0, None)
    assert request.messages[0].for_template() == {"role": "system", "content": "a\nb"}
    assert ChatRequest(messages=[USER], max_tokens=9).sampling().max_tokens == 9
    assert ChatRequest(messages=[USER]).sampling().max_tokens == 128


@pytest.mark.parametrize("field", sorted(NO_OP))
def test_every_no_op_field_takes_its_defaults(field):
    for value in NO_OP[field]:
        ChatRequest(messages=[USER], **{field: value})


def test_disagreeing_lengths_and_stream_options_without_a_stream_are_refused():
    with pytest.raises(OpenAIError, match="disagree"):
        ChatRequest(messages=[USER], max_tokens=3, max_completion_tokens=4).sampling()
    with pytest.raises(OpenAIError, match="only allowed when stream is true"):
        ChatRequest(messages=[USER], stream_options={"include_usage": True}).sampling()


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"tool_choice": 5}, "tool_choice", "valid"),  # a union: the member names stay out of the param
        ({"stop": ["ok", ""]}, "stop[1]", "at least 1"),
        ({"messages": [USER, {"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[1].content", "input_audio"),
        ({"frequency_penalty": 0.1}, "frequency_penalty", "omit it or send 0"),
        ({"seed": 2**32}, "seed", "less than or equal to 4294967295"),
        ({"top_p": 0.0}, "top_p", "greater than 0"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_field_in_openais_shape(change, param, words):
    app = install_errors(FastAPI())

    @app.post("/chat")
    def chat(request: ChatRequest):
        return {}

    answer = TestClient(app).post("/chat", json={"messages": [USER]} | change)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["code"]
    assert words in error["message"], error["message"]
    with pytest.raises(ValidationError):
        ChatRequest(**({"messages": [USER]} | change))
