"""The Bentos' web pages (`/ui`, Gradio mounted in the service) under a real `bentoml serve` on tiny models: the
page and its config load, the guard in front of them is unchanged (pickle and multipart refused, on the API and
under /ui), and the page's handlers go through the HTTP API, so a request the API refuses is refused on the page
with the API's own message. The pages in a browser: tests/browser."""

from __future__ import annotations

import asyncio

import gradio as gr
import httpx
import pytest
from starlette.requests import Request

from bentos import webui
from bentos.chat import chat_page
from bentos.rag import rag_page
from tests.conftest import serve_tiny_chat, serve_tiny_rag

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def chat_server(tiny_chat_model, tmp_path_factory):
    with serve_tiny_chat(tiny_chat_model, tmp_path_factory) as base:
        yield base


@pytest.fixture(scope="module")
def rag_server(tiny_rag_models, tmp_path_factory):
    with serve_tiny_rag(tiny_rag_models, tmp_path_factory) as base:
        yield base


def page_request(base: str, host_header: str | None = None) -> gr.Request:
    """What Gradio hands a handler: the request that came in on `base`'s socket."""
    host, port = base.removeprefix("http://").split(":")
    headers = [(b"host", host_header.encode())] if host_header else []
    scope = {"type": "http", "method": "POST", "path": "/ui/gradio_api/queue/join", "scheme": "http"}
    return gr.Request(request=Request(scope | {"server": (host, int(port)), "headers": headers}))


def chat_turn(base: str, message: str, history=(), max_tokens: int = 8) -> list[str]:
    """Every value the chat handler yields for one turn (the answer as it grows)."""

    async def collect():
        turn = chat_page.respond(message, list(history), "", 0.0, 1.0, max_tokens, page_request(base))
        return [text async for text in turn]

    return asyncio.run(collect())


def rag_run(base: str, question: str, mode: str, k: int = 3, **filters) -> tuple[str, list[list]]:
    values = [filters.get(name, "") for name in rag_page.FILTERS]
    return asyncio.run(rag_page.run(question, mode, k, 8, *values, page_request(base)))


def assert_page(base: str) -> dict:
    """/ui/ is the page's HTML, its config loads, and it offers no API page, footer or flagging."""
    page = httpx.get(f"{base}/ui/", timeout=60, follow_redirects=True)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:300]
    assert "gradio" in page.text.lower()
    config = httpx.get(f"{base}/ui/config", timeout=60)
    assert config.status_code == 200, config.text[:300]
    body = config.json()
    assert body["components"] and body["footer_links"] == [] and body["analytics_enabled"] is False
    assert not any(c.get("props", {}).get("flagging_mode") == "manual" for c in body["components"])
    info = httpx.get(f"{base}/ui/gradio_api/info", timeout=60)
    assert info.status_code == 200 and info.json()["named_endpoints"] == {}, info.text[:500]
    return body


def assert_guarded(base: str, api_path: str) -> None:
    """Pickle is refused on the API and under /ui; so are uploads (the page needs none)."""
    for path in (api_path, "/ui/gradio_api/queue/join"):
        pickled = httpx.post(
            f"{base}{path}",
            content=b"\x80\x04K\x01.",
            headers={"content-type": "application/vnd.bentoml+pickle"},
            timeout=30,
        )
        assert pickled.status_code == 415 and "application/json" in pickled.json()["error"]["message"]
    upload = httpx.post(f"{base}/ui/gradio_api/upload", files={"files": ("a.txt", b"hi")}, timeout=30)
    assert upload.status_code == 415, upload.text


def test_the_service_address_is_the_socket_never_the_host_header():
    request = page_request("http://127.0.0.1:3999", host_header="attacker.example:80")
    assert webui.service_url(request) == "http://127.0.0.1:3999"
    wildcard = gr.Request(request=Request({"type": "http", "server": ("0.0.0.0", 3000), "headers": []}))
    assert webui.service_url(wildcard) == "http://127.0.0.1:3000"
    v6 = gr.Request(request=Request({"type": "http", "server": ("::1", 3000), "headers": []}))
    assert webui.service_url(v6) == "http://[::1]:3000"


def test_only_a_refusals_reason_reaches_the_browser():
    """A mounted page shows a `gr.Error`'s message (the API's refusal), never another exception's text."""
    import bentoml
    from gradio.utils import error_payload

    page = rag_page.build(20, 3, 256, 32)

    @webui.mount(page)
    @bentoml.service
    class Probe:
        pass

    assert page.show_error is False and page.config["footer_links"] == []
    assert error_payload(gr.Error("the limit is 8000"), page.show_error)["error"] == "the limit is 8000"
    assert error_payload(OSError("/srv/secret: denied"), page.show_error) == {"error": None}


def test_chat_page_loads_and_the_guard_still_holds(chat_server):
    body = assert_page(chat_server)
    assert any(c.get("type") == "chatbot" for c in body["components"])
    assert_guarded(chat_server, "/v1/chat/completions")


def test_gradios_other_routes_are_off_and_out_of_the_api_schema(chat_server):
    """What Gradio mounts besides the page (its code editor, monitoring, URL proxy, file routes) refuses; none of
    it is in the service's OpenAPI schema, which stays the API's."""
    paths = httpx.get(f"{chat_server}/docs.json", timeout=30).json()["paths"]
    assert "/v1/chat/completions" in paths and not [p for p in paths if p.startswith("/ui")]
    for method, path, body, status in [
        ("POST", "/ui/gradio_api/vibe-code", {"code": "import os"}, 403),
        ("POST", "/ui/gradio_api/vibe-edit", {"prompt": "x"}, 403),
        ("GET", "/ui/monitoring", None, 403),
        ("GET", "/ui/gradio_api/proxy=https://example.com/", None, 400),
        ("GET", "/ui/gradio_api/file=/etc/passwd", None, 403),
        ("GET", "/ui/gradio_api/file/etc/passwd", None, 403),
    ]:
        response = httpx.request(method, f"{chat_server}{path}", json=body, timeout=30)
        assert response.status_code == status and "error" in response.json(), (path, response.text[:200])


def test_chat_handler_streams_multi_turn_and_chinese(chat_server):
    first = chat_turn(chat_server, "The light is red. What do I do?")
    assert first and all(isinstance(t, str) for t in first)
    # Each value is the whole answer so far: it only grows.
    assert all(b.startswith(a) for a, b in zip(first, first[1:], strict=False))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "The light is red. What do I do?"}]},
        {"role": "assistant", "content": first[-1]},
    ]
    second = chat_turn(chat_server, "请用中文回答：红灯时怎么办？", history)
    # Greedy: the page's answer is the API's answer to the same conversation.
    api = httpx.post(
        f"{chat_server}/v1/chat/completions",
        json={
            "messages": chat_page.conversation("请用中文回答：红灯时怎么办？", history, ""),
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=60,
    )
    assert api.status_code == 200 and second[-1] == api.json()["choices"][0]["message"]["content"]


def refusal(values: list) -> str:
    """The reason of a refused turn: the handler's last value, shown in the chat as a refusal."""
    last = values[-1]
    assert isinstance(last, gr.ChatMessage) and last.metadata["title"] == chat_page.REFUSED, values
    return last.content


def test_chat_handler_refuses_what_the_api_refuses_with_its_message(chat_server):
    too_long = "x" * 8001
    api = httpx.post(
        f"{chat_server}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": too_long}], "stream": True},
        timeout=60,
    )
    assert api.status_code == 400
    refused = chat_turn(chat_server, too_long)
    assert len(refused) == 1 and refusal(refused) == api.json()["error"]["message"]
    assert "limit is 8000" in refusal(refused)
    assert "limit is 1024" in refusal(
        chat_turn(chat_server, "word " * 1500)
    )  # tokens, counted by the service
    assert "less than or equal to 256" in refusal(chat_turn(chat_server, "hi", max_tokens=100000))


def test_a_refused_turn_is_not_sent_again():
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "x" * 8001},
        {"role": "assistant", "content": "the limit is 8000", "metadata": {"title": chat_page.REFUSED}},
    ]
    assert chat_page.conversation("again", history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]


def test_rag_page_loads_and_the_guard_still_holds(rag_server):
    body = assert_page(rag_server)
    assert any(c.get("type") == "dataframe" for c in body["components"])
    assert_guarded(rag_server, "/search")


def test_rag_handler_asks_and_searches(rag_server):
    answer, rows = rag_run(rag_server, "Who won Super Bowl 50?", rag_page.ASK, k=2)
    assert isinstance(answer, str) and len(rows) == 2
    assert [r[0] for r in rows] == [1, 2] and all(
        r[2] == "tiny.jsonl" and isinstance(r[1], float) for r in rows
    )
    assert all(r[4].startswith("tiny.jsonl#") and r[5] for r in rows)  # doc_id and the passage's text

    answer, rows = rag_run(rag_server, "Who won Super Bowl 50?", rag_page.SEARCH, k=5)
    assert answer == "" and len(rows) == 5
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)

    _, rows = rag_run(rag_server, "冠军赛", rag_page.SEARCH, k=5, title="超级碗")
    assert [r[3] for r in rows] == ["超级碗"]


def test_rag_handler_refuses_what_the_api_refuses_with_its_message(rag_server):
    too_long = "q" * 2001
    api = httpx.post(f"{rag_server}/ask", json={"question": too_long}, timeout=60)
    assert api.status_code == 400
    with pytest.raises(gr.Error) as refused:
        rag_run(rag_server, too_long, rag_page.ASK)
    assert refused.value.message == api.json()["error"]["message"]
    with pytest.raises(gr.Error, match="2000"):
        rag_run(rag_server, too_long, rag_page.SEARCH)


def test_ask_names_its_passages_with_title_and_text(rag_server):
    asked = httpx.post(
        f"{rag_server}/ask", json={"question": "Where was the game played?", "k": 2}, timeout=60
    )
    assert asked.status_code == 200, asked.text
    sources = asked.json()["sources"]
    assert [s["id"] for s in sources] == asked.json()["passages"]
    assert all(set(s) == {"id", "doc_id", "source", "title", "score", "text"} and s["text"] for s in sources)
