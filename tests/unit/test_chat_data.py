"""Chat rows in Alpaca, messages and ShareGPT form: conversion and row-level problems named by row and field."""

from __future__ import annotations

import pytest

from llmpath.chat import ChatColumns, to_messages, validate_conversations

pytestmark = pytest.mark.unit
COLS = ChatColumns()


def test_alpaca_row_with_input_and_system():
    messages, problems = to_messages(
        {"instruction": "Translate.", "input": "bonjour", "output": "hello", "system": "Be brief."}, COLS
    )
    assert problems == []
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate.\n\nbonjour"},
        {"role": "assistant", "content": "hello"},
    ]
    messages, _ = to_messages({"instruction": "Say hi.", "input": "", "output": "hi"}, COLS)
    assert messages[0] == {"role": "user", "content": "Say hi."}


def test_messages_and_sharegpt_rows():
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert to_messages({"messages": chat}, COLS) == (chat, [])
    share = [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]
    assert to_messages({"conversations": share}, COLS) == (chat, [])
    renamed = ChatColumns(format="alpaca", instruction="q", output="a")
    assert to_messages({"q": "2+2?", "a": "4"}, renamed)[0][1:] == chat[1:]


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"instruction": "x", "output": ""}, "output", "empty text"),
        ({"output": "y"}, "instruction", "missing"),
        ({"instruction": "x", "output": 3}, "output", "wrong type: expected text, got int"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "bad role: expected one of"),
        ({"messages": [{"role": "user", "content": " "}]}, "messages[0].content", "empty text"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "no assistant turn to learn from"),
        (
            {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},
            "messages",
            "bad role order: the conversation must start with a user turn",
        ),
        (
            {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
            "conversations",
            "bad role order: user and assistant turns must alternate",
        ),
        ({"messages": "hi"}, "messages", "wrong type: expected a non-empty list of turns"),
        ({"text": "hi"}, "(row)", "missing: none of the columns"),
    ],
)
def test_problems_name_the_field(row, field, problem):
    messages, problems = to_messages(row, COLS)
    assert messages == [] or problems
    assert any(f == field and p.startswith(problem) for f, p in problems), problems


def test_validation_reports_rows_by_number_and_drops_duplicates():
    rows = [
        {"instruction": "a", "output": "b"},
        {"instruction": "a", "output": ""},
        {"instruction": "a", "output": "b"},
        "not an object",
        {"instruction": "c", "output": "d"},
    ]
    report = validate_conversations(rows, COLS, "alpaca.json")
    assert report.rows == 5 and len(report.kept) == 2 and report.duplicates == 1
    assert [str(i) for i in report.issues] == [
        "alpaca.json: row 2: output: empty text",
        "alpaca.json: row 3: (row): duplicate: same as row 1",
        "alpaca.json: row 4: (row): wrong type: expected an object",
    ]


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def _glaive(turns: list[tuple[str, str]], tools=TOOLS) -> dict:
    import json

    row = {"conversations": [{"from": r, "value": v} for r, v in turns]}
    return row | ({"tools": json.dumps(tools)} if tools is not None else {})


CALL = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'


def test_glaive_tool_rows_become_calls_and_tool_turns_with_their_tools():
    row = _glaive([("human", "Oslo?"), ("function_call", CALL), ("observation", '{"t": 3}'), ("gpt", "3 C.")])
    messages, problems = to_messages(row, COLS)
    assert problems == []
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[0]["tools"][0]["name"] == "get_weather"
    assert messages[1]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    # A row with an empty tools field and no calls is a plain chat.
    plain, problems = to_messages(_glaive([("human", "hi"), ("gpt", "hello")], tools=[]), COLS)
    assert problems == [] and "tools" not in plain[0]


@pytest.mark.parametrize(
    ("turns", "tools", "field", "problem"),
    [
        (
            [("human", "a"), ("function_call", "{oops"), ("gpt", "b")],
            TOOLS,
            "conversations[1].value",
            "not valid JSON",
        ),
        (
            [("human", "a"), ("function_call", '{"arguments": {}}')],
            TOOLS,
            "conversations[1].value",
            "without a name",
        ),
        (
            [("human", "a"), ("function_call", '{"name": "launch", "arguments": {}}')],
            TOOLS,
            "conversations[1]",
            "no tool",
        ),
        (
            [("human", "a"), ("function_call", '{"name": "get_weather", "arguments": {"city": 1}}')],
            TOOLS,
            "conversations[1]",
            "schema",
        ),
        (
            [("human", "a"), ("observation", "{}"), ("gpt", "b")],
            TOOLS,
            "conversations",
            "must follow a function call",
        ),
        ([("human", "a"), ("gpt", "b")], [{"name": "bad name"}], "tools[0].name", "letters"),
        ([("human", "a"), ("function_call", CALL)], None, "conversations[1]", "no tool"),
    ],
)
def test_bad_tool_rows_name_the_field(turns, tools, field, problem):
    messages, problems = to_messages(_glaive(turns, tools), COLS)
    assert messages == [] or problems
    assert any(f == field and problem in p for f, p in problems), problems


def test_a_tools_column_that_is_not_json_is_named():
    row = _glaive([("human", "a"), ("gpt", "b")]) | {"tools": "[{"}
    assert to_messages(row, COLS)[1] == [("tools", "not valid JSON")]
