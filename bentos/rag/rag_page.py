"""The rag Bento's web page at `/ui`: ask a question and read the answer with the passages it was given (source,
title, score, text), or search only (the k best passages, no answer); both with k and the metadata filters
the API has (source, doc_id, title: exact matches).

The page sends `POST /ask` or `POST /search` to the service itself (bentos/webui.py), so it is held to the
API's limits and shows the API's reasons when a request is refused."""

from __future__ import annotations

from typing import Any

import gradio as gr

try:
    import webui  # in the Bento: copied beside this file at packaging
except ImportError:  # in the repo
    from bentos import webui

ASK, SEARCH = "Ask (retrieve, then answer)", "Search only"
COLUMNS = ["#", "score", "source", "title", "doc_id", "text"]
FILTERS = ("source", "doc_id", "title")
SHOWN = 240  # characters of a passage's text in the table (the API returns all of it)


def shorten(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 1].rstrip() + "…"


def rows(passages: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            i,
            round(float(p["score"]), 4),
            p["source"],
            p.get("title", ""),
            p["doc_id"],
            shorten(p.get("text", "")),
        ]
        for i, p in enumerate(passages, start=1)
    ]


async def run(
    question: str,
    mode: str,
    k: float,
    max_new_tokens: float,
    source: str,
    doc_id: str,
    title: str,
    request: gr.Request,
) -> tuple[str, list[list[Any]]]:
    """(answer, passage rows): /ask's answer and the passages it used, or /search's hits and no answer."""
    base = webui.service_url(request)
    values = dict(zip(FILTERS, (source, doc_id, title), strict=True))
    filters = {name: value for name, value in values.items() if value}
    body: dict[str, Any] = {"k": int(k)} | ({"filters": filters} if filters else {})
    if mode == SEARCH:
        found = await webui.post_json(f"{base}/search", body | {"query": question})
        return "", rows(found["results"])
    asked = await webui.post_json(
        f"{base}/ask", body | {"question": question, "max_new_tokens": int(max_new_tokens)}
    )
    return asked["answer"], rows(asked["sources"])


def build(
    max_k: int, ask_k: int, max_new_tokens: int, ask_tokens: int, title: str = "llmpath rag"
) -> gr.Blocks:
    """The page; the sliders' ranges are the API's (`max_k`: /ask's cap on k; `max_new_tokens`: its cap on
    answer tokens) and their defaults the Bento's ask settings."""
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}")
        with gr.Row():
            question = gr.Textbox(
                label="Question", placeholder="Ask about the indexed documents", elem_id="question", scale=5
            )
            submit = gr.Button("Run", variant="primary", elem_id="run", scale=1)
        with gr.Row():
            mode = gr.Radio([ASK, SEARCH], value=ASK, label="Mode", elem_id="mode", scale=2)
            k = gr.Slider(1, max_k, value=ask_k, step=1, label="Passages (k)", elem_id="k")
            tokens = gr.Slider(1, max_new_tokens, value=ask_tokens, step=1, label="Max answer tokens")
        with gr.Accordion("Filters (exact match; empty: any)", open=False), gr.Row():
            source = gr.Textbox(label="source", max_lines=1)
            doc_id = gr.Textbox(label="doc_id", max_lines=1)
            doc_title = gr.Textbox(label="title", max_lines=1)
        answer = gr.Textbox(label="Answer", interactive=False, lines=2, elem_id="answer")
        passages = gr.Dataframe(
            headers=COLUMNS,
            label="Passages",
            interactive=False,
            wrap=True,
            elem_id="passages",
            column_widths=["4%", "8%", "14%", "14%", "14%", "46%"],
        )
        gr.on(
            [submit.click, question.submit],
            run,
            inputs=[question, mode, k, tokens, source, doc_id, doc_title],
            outputs=[answer, passages],
            api_visibility="private",
        )
    return page
