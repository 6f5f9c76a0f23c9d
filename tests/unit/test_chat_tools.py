"""Tool calling as pure logic (bentos/chat/tools.py): definitions checked and rendered, calls parsed and
validated against their schema, tool turns flattened for any template, and streamed calls assembled."""

from __future__ import annotations

import json

import pytest

from bentos.chat.tools import (
    CALL_OPEN,
    CallStream,
    ToolError,
    call_text,
    check_tools,
    flatten,
    parse_calls,
    template_has_tools,
    tools_prompt,
)

pytestmark = pytest.mark.unit

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
        },
    },
}
FUNCTIONS = check_tools([WEATHER])


def test_openai_and_bare_tools_become_the_same_function():
    bare = WEATHER["function"]
    assert check_tools([bare]) == FUNCTIONS
    assert FUNCTIONS[0]["name"] == "get_weather" and FUNCTIONS[0]["parameters"]["required"] == ["city"]
    assert check_tools([{"name": "ping"}])[0]["parameters"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ("not a list", "tools"),
        ([42], "tools[0]"),
        ([{"type": "retrieval"}], "tools[0].type"),
        ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
        ([{"name": "x", "parameters": {"type": 12}}], "tools[0].parameters"),
        ([{"name": "x", "parameters": []}], "tools[0].parameters"),
        ([{"name": "x", "secret": 1}], "tools[0]"),
        ([{"name": "x"}, {"name": "x"}], "tools[1].name"),
        ([{"name": f"t{i}"} for i in range(33)], "tools"),
    ],
)
def test_bad_tool_definitions_name_the_field(tools, param):
    with pytest.raises(ToolError) as err:
        check_tools(tools)
    assert err.value.param == param


def test_a_bad_schema_is_described_without_quoting_it():
    with pytest.raises(ToolError) as err:
        check_tools(
            [{"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": "SECRET"}}}}]
        )
    assert "SECRET" not in str(err.value) and "properties.a.type" in str(err.value)


def test_tools_go_into_the_system_prompt_when_the_template_has_no_tool_support():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
        },
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "tool", "content": '{"wind": 5}'},
        {"role": "assistant", "content": "3 degrees."},
    ]
    flat, native = flatten(messages, FUNCTIONS)
    assert native is None
    assert [m["role"] for m in flat] == ["system", "user", "assistant", "user", "assistant"]
    assert flat[0]["content"].startswith("Be brief.\n\n") and '"get_weather"' in flat[0]["content"]
    assert (
        flat[2]["content"] == '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert (
        flat[3]["content"]
        == '<tool_response>{"temp": 3}</tool_response>\n<tool_response>{"wind": 5}</tool_response>'
    )
    # Without a system turn one is added; with native support the tools go to the template instead.
    flat, _ = flatten(messages[1:2], FUNCTIONS)
    assert flat[0] == {"role": "system", "content": tools_prompt(FUNCTIONS)}
    flat, native = flatten(messages[1:2], FUNCTIONS, native=True)
    assert flat == [messages[1]] and native == FUNCTIONS


def test_template_tool_support_is_detected():
    class Tok:
        chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"

    assert not template_has_tools(Tok())
    Tok.chat_template = "{% if tools %}{{ tools | tojson }}{% endif %}"
    assert template_has_tools(Tok())


def test_a_valid_call_is_parsed_with_its_arguments_as_json_text():
    text = call_text([{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}])
    parsed = parse_calls(text, FUNCTIONS)
    assert parsed.problem is None and parsed.content is None
    (call,) = parsed.calls
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Oslo", "days": 2}
    assert call["id"].startswith("call_")
    two = parse_calls("Checking.\n" + text + "\n" + text.replace("Oslo", "Rome"), FUNCTIONS)
    assert two.content == "Checking.\n" and [json.loads(c["arguments"])["city"] for c in two.calls] == [
        "Oslo",
        "Rome",
    ]
    # Arguments written as JSON text (as OpenAI sends them) are read too.
    quoted = parse_calls(
        CALL_OPEN + '{"name": "get_weather", "arguments": "{\\"city\\": \\"X\\"}"}</tool_call>', FUNCTIONS
    )
    assert json.loads(quoted.calls[0]["arguments"]) == {"city": "X"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}', "not closed"),
        ('<tool_call>["get_weather"]</tool_call>', "not an object with a name"),
        ('<tool_call>{"name": "launch", "arguments": {}}</tool_call>', "not offered"),
        ('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>', "at (top) (required)"),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": 5}}</tool_call>', "at city (type)"),
        (
            '<tool_call>{"name": "get_weather", "arguments": {"city": "a", "days": 0}}</tool_call>',
            "at days (minimum)",
        ),
        ('<tool_call>{"name": "get_weather", "arguments": "[1"}</tool_call>', "arguments are not valid JSON"),
        ('<tool_call>{"name": "get_weather", "arguments": [1]}</tool_call>', "arguments are not an object"),
        ("<tool_call>" + "[" * 100000 + "</tool_call>", "not valid JSON"),
    ],
)
def test_an_unusable_call_is_plain_text_with_the_reason(text, problem):
    parsed = parse_calls(text, FUNCTIONS)
    assert parsed.calls == [] and parsed.content == text and problem in parsed.problem


def test_a_schema_that_cannot_be_applied_makes_the_call_text_not_an_error():
    functions = check_tools([{"name": "x", "parameters": {"$ref": "https://example.invalid/schema.json"}}])
    parsed = parse_calls('<tool_call>{"name": "x", "arguments": {}}</tool_call>', functions)
    assert parsed.calls == [] and "could not be applied" in parsed.problem


def _stream(pieces: list[str], prefix: str = "") -> tuple[list[dict], str]:
    stream = CallStream(FUNCTIONS, prefix)
    deltas = [d for piece in pieces for d in stream.feed(piece)]
    last, reason = stream.finish("stop")
    return deltas + last, reason


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_streamed_calls_arrive_as_openai_tool_call_deltas():
    text = "Let me look.\n" + call_text([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    deltas, reason = _stream(_pieces(text))
    assert reason == "tool_calls"
    assert (
        "".join(d.get("content", "") for d in deltas)
        == "Let me look.\n"
        == parse_calls(text, FUNCTIONS).content
    )
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Oslo"}
    assert not any(CALL_OPEN[:2] in d.get("content", "") for d in deltas)  # the marker never leaks as text


def test_streamed_text_without_calls_and_invalid_calls_come_through_whole():
    plain = "No tools needed: it is < 5 degrees."
    deltas, reason = _stream(_pieces(plain, 2))
    assert reason == "stop" and "".join(d["content"] for d in deltas) == plain
    broken = "  <tool_call>{oops</tool_call>"
    deltas, reason = _stream(_pieces(broken))
    assert reason == "stop" and "".join(d["content"] for d in deltas) == broken
    # A forced prefix (tool_choice naming a function) is part of the call the stream reads.
    prefix = '<tool_call>{"name": "get_weather", "arguments":'
    deltas, reason = _stream(_pieces('{"city": "Oslo"}}</tool_call>'), prefix)
    assert reason == "tool_calls" and not any("content" in d for d in deltas)


def test_call_accuracy_needs_the_right_function_and_equal_arguments():
    from llmpath.kinds.chat.calls import call_metrics, call_prompts, score_call

    reference = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    right = score_call(call_text([reference]), FUNCTIONS, reference)
    other_city = score_call(
        call_text([{"name": "get_weather", "arguments": {"city": "Rome"}}]), FUNCTIONS, reference
    )
    prose = score_call("It is sunny in Oslo.", FUNCTIONS, reference)
    broken = score_call(
        '<tool_call>{"name": "get_weather", "arguments": {"city": 1}}</tool_call>', FUNCTIONS, reference
    )
    assert (right["correct"], other_city["correct"], prose["correct"], broken["correct"]) == (
        True,
        False,
        False,
        False,
    )
    assert other_city["right_function"] and not broken["valid_call"] and "type" in broken["problem"]
    metrics = call_metrics([right, other_city, prose, broken])
    assert metrics == {
        "call_accuracy": 0.25,
        "function_accuracy": 0.5,
        "valid_call_share": 0.5,
        "call_prompts": 4.0,
    }

    messages = [
        {"role": "user", "content": "Oslo?", "tools": FUNCTIONS},
        {"role": "assistant", "content": "", "tool_calls": [reference]},
        {"role": "tool", "content": "{}"},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "X"}}],
        },
    ]
    rows = [{"messages": json.dumps(m), "truncated": False} for m in ([messages[0]], messages, messages)]
    prompts = call_prompts(rows, limit=1)  # rows without a call are skipped; the first call is the reference
    assert prompts == [([messages[0]], reference)]
