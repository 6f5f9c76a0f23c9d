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
