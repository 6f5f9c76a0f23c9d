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


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'}


def test_tools_and_tool_choice_become_what_the_prompt_and_parser_need():
    from bentos.chat.tools import CALL_OPEN

    assert ChatRequest(messages=[USER]).tool_setup().functions == []  # no tools: nothing parsed
    auto = ChatRequest(messages=[USER], tools=[TOOL]).tool_setup()
    assert [f["name"] for f in auto.functions] == ["get_weather"] and auto.prefix == ""
    assert ChatRequest(messages=[USER], tools=[TOOL], tool_choice="none").tool_setup().functions == []
    assert ChatRequest(messages=[USER], tools=[TOOL], tool_choice="required").tool_setup().prefix == CALL_OPEN
    named = ChatRequest(
        messages=[USER], tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert named.tool_setup().prefix == CALL_OPEN + '{"name": "get_weather", "arguments":'
    # A call and its result come back from the client and reach the template as data.
    request = ChatRequest(messages=[USER, CALLED, RESULT], tools=[TOOL])
    assert request.messages[1].for_template() == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
    }
    assert request.messages[2].for_template() == {"role": "tool", "content": '{"temp": 3}'}


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"tool_choice": "auto"}, "tool_choice", "needs tools"),
        ({"tools": [TOOL], "tool_choice": "always"}, "tool_choice", "must be"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice", "must be"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice", "not in tools"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name", "letters"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]}, "tools[0].function.parameters", "JSON Schema"),
    ],
)  # fmt: skip
def test_unusable_tools_are_refused_by_field(change, param, words):
    with pytest.raises(OpenAIError) as err:
        ChatRequest(**({"messages": [USER]} | change)).tool_setup()
    assert err.value.status == 400 and err.value.param == param and words in err.value.message


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([USER, RESULT], "answers no tool call"),
        ([USER, CALLED, RESULT | {"tool_call_id": "call_2"}], "answers no tool call"),
        ([USER, CALLED, RESULT, RESULT], "answers no tool call"),
        ([USER, {"role": "tool", "content": "x"}], "need a tool_call_id"),
        ([USER, {"role": "user", "content": None}], "must be a string"),
        ([USER, {"role": "assistant", "content": None}], "content may be null only"),
        ([USER, CALLED | {"role": "user", "content": "x"}], "only assistant messages carry tool_calls"),
        ([USER, {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "function": {"name": "get_weather", "arguments": "{oops"}}]}], "not valid JSON"),
        ([USER, {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "function": {"name": "get_weather", "arguments": "[1]"}}]}], "JSON object"),
    ],
)  # fmt: skip
def test_tool_messages_that_do_not_fit_the_conversation_are_refused(messages, words):
    with pytest.raises(ValidationError, match=words):
        ChatRequest(messages=messages, tools=[TOOL])
