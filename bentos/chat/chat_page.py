"""The chat Bento's web page at `/ui`: a multi-turn chat that streams its answers, with a system prompt and the
sampling settings (temperature, top_p, max tokens) beside it.

Each turn is one `POST /v1/chat/completions` with `stream: true` to the service itself (bentos/webui.py), so
the page is held to the API's limits. A refusal is shown in the chat, with the API's reason, as the answer to
the question it refused; neither is sent again with the next turns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

try:
    import webui  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import webui

REFUSED = "⚠️ The service refused this message"  # the title of a refusal in the chat


def text_of(content: Any) -> str:
    """A chat message's text: Gradio keeps it as a string or as a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def conversation(message: str, history: list[dict], system: str) -> list[dict[str, str]]:
    """OpenAI messages: the system prompt (if any), the turns so far, the new question. A refused turn (the
    question and the refusal shown for it) is not part of the conversation."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for turn in history:
        if (turn.get("metadata") or {}).get("title") == REFUSED:
            if messages and messages[-1]["role"] == "user":
                messages.pop()
            continue
        if turn.get("role") in ("user", "assistant"):
            messages.append({"role": turn["role"], "content": text_of(turn.get("content"))})
    return [*messages, {"role": "user", "content": message}]


async def respond(
    message: str,
    history: list[dict],
    system: str,
    temperature: float,
    top_p: float,
    max_tokens: float,
    request: gr.Request,
) -> AsyncIterator[str | gr.ChatMessage]:
    """The answer so far, as its chunks arrive; a refusal (before or during the answer) is the answer's last
    value: the API's reason, shown in the chat as a refusal."""
    body = {
        "messages": conversation(message, history, system or ""),
        "temperature": float(temperature),
        "top_p": float(top_p),
        "max_tokens": int(max_tokens),
        "stream": True,
    }
    answer = ""
    try:
        async for chunk in webui.stream_events(f"{webui.service_url(request)}/v1/chat/completions", body):
            for choice in chunk.get("choices") or []:
                answer += (choice.get("delta") or {}).get("content") or ""
            yield answer
    except gr.Error as refused:
        reason = f"{answer}\n\n(cut off: {refused.message})" if answer else refused.message
        yield gr.ChatMessage(content=reason, metadata={"title": REFUSED})


def build(max_new_tokens: int, title: str = "llmpath chat") -> gr.Blocks:
    """The page: settings on the left, the conversation on the right. `max_new_tokens`: the service's cap on
    max_tokens (the slider's end)."""
    with (
        gr.Blocks(title=title, fill_height=True, analytics_enabled=False) as page,
        gr.Row(equal_height=False),
    ):
        with gr.Column(scale=1, min_width=260, elem_id="settings"):
            gr.Markdown(f"## {title}\nAnswers stream from this service's `/v1/chat/completions`.")
            settings = [
                gr.Textbox(label="System prompt", placeholder="the model's default", lines=3),
                gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0: greedy)"),
                gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="top_p"),
                gr.Slider(1, max_new_tokens, value=min(128, max_new_tokens), step=1, label="Max new tokens"),
            ]
        with gr.Column(scale=3):
            gr.ChatInterface(
                respond,
                chatbot=gr.Chatbot(label="Conversation", elem_id="chat", buttons=["copy"], height=560),
                textbox=gr.Textbox(
                    placeholder="Ask anything, in any language",
                    elem_id="message",
                    submit_btn=True,
                    stop_btn=True,
                ),
                additional_inputs=settings,  # already shown on the left: not repeated in an accordion
                flagging_mode="never",
                fill_height=True,
                api_visibility="private",
                autofocus=True,
                analytics_enabled=False,
            )
    return page
