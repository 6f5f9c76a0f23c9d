"""SmolLM2's own chat template renders conversations; labels cover assistant tokens only, token by token."""

from __future__ import annotations

import pytest

from llmpath.chat import IGNORE, render

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


def labelled_spans(tokenizer, rendered) -> list[str]:
    """The decoded runs of consecutive labelled tokens."""
    spans, current = [], []
    for token, label in zip(rendered.input_ids, rendered.labels, strict=True):
        if label != IGNORE:
            assert label == token  # a labelled position predicts its own token (shifted inside the model)
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_only_assistant_turns_are_labelled_and_each_ends_with_end_of_turn(tokenizer):
    messages = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    rendered = render(tokenizer, messages, max_length=512)
    assert rendered.input_ids == tokenizer.apply_chat_template(messages, tokenize=True)
    assert labelled_spans(tokenizer, rendered) == ["Hello! How can I help?<|im_end|>\n", "4<|im_end|>\n"]
    assert (
        tokenizer.eos_token == "<|im_end|>"
    )  # the token the model learns to stop on is the one generate stops on
    text = tokenizer.decode(rendered.input_ids)
    assert (
        "Hi there" in text and "You are a helpful AI assistant" in text
    )  # user and default system: unlabelled
    assert not rendered.truncated


def test_over_long_conversations_are_cut_or_dropped(tokenizer):
    messages = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "short answer"}]
    full = render(tokenizer, messages, max_length=4096)
    cut = render(tokenizer, messages, max_length=len(full.input_ids) - 3)
    assert cut.truncated and cut.input_ids == full.input_ids[:-3] and labelled_spans(tokenizer, cut)
    assert render(tokenizer, messages, max_length=len(full.input_ids) - 3, overflow="drop") is None
    assert render(tokenizer, messages, max_length=40) is None  # the answer would be cut away entirely


def test_tool_conversations_label_the_calls_and_answers_only(tokenizer):
    """Glaive-style: tools go into the system prompt (SmolLM2's template has no tool support), the call is
    labelled as the assistant's text, the tool's result (a user turn) and the tool list are not."""
    from llmpath.chat import ChatColumns, prompt_ids, to_messages

    tools = '[{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]'
    row = {
        "tools": tools,
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
            {"from": "observation", "value": '{"temp": 3}'},
            {"from": "gpt", "value": "It is 3 degrees."},
        ],
    }
    messages, problems = to_messages(row, ChatColumns())
    assert problems == []
    rendered = render(tokenizer, messages, max_length=512)
    text = tokenizer.decode(rendered.input_ids)
    assert text.startswith("<|im_start|>system\nYou can call these functions:\n<tools>\n")
    assert "SmolLM" not in text  # the tool prompt is the system turn: no default system prompt on top
    assert '<|im_start|>user\n<tool_response>{"temp": 3}</tool_response><|im_end|>' in text
    assert labelled_spans(tokenizer, rendered) == [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|im_end|>\n',
        "It is 3 degrees.<|im_end|>\n",
    ]
    # The prompt evaluation and the Bento continue from: everything before the call, ending with the header.
    prompt = prompt_ids(tokenizer, messages[:1])
    assert rendered.input_ids[: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith("Weather in Oslo?<|im_end|>\n<|im_start|>assistant\n")
