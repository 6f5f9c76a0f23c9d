"""What the Bentos' web pages share: a Gradio page mounted at `/ui` of a service, and the one way its handlers
reach the model, through the service's own HTTP API.

A page handler never calls the model directly: it sends the request any client would send to the address the
page's request came in on, so the guard (body size and time, JSON only, queueing, OpenAI-shaped errors) and the
request schemas (counts, lengths, tokens, sampling ranges) apply to the page exactly as to the API, with one
implementation. The address is the listening socket's (ASGI `scope["server"]`), never the Host header: a client
chooses that one, and it must not choose where the server sends requests. A refusal is raised as `gr.Error`
with the API's own message, which the page shows; nothing else of an error reaches the browser.

The page has no uploads (the guard refuses multipart bodies anyway), no flagging, no API page and no footer,
and Gradio's usage analytics are off: a served Bento makes no network calls of its own. The guard needs no rule
of its own for `/ui`: Gradio's requests are JSON POSTs that return at once (`queue/join`) and GETs, its
server-sent event streams among them, which never wait for a working slot; a handler's API request takes its
slot on the API's path like any client's, while the page's request holds none. Copied into each Bento beside
service.py (BentoSpec.borrowed)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

# Before gradio is imported: it reads the setting at import and when a Blocks is created.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import bentoml  # noqa: E402
import gradio as gr  # noqa: E402
import httpx  # noqa: E402

PATH = "/ui"
# A long answer streams for minutes on a CPU; connecting to ourselves is immediate.
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=30.0)
# System fonts: the default theme's web fonts are served by Gradio itself, but nothing needs them.
FONT = [
    "ui-sans-serif",
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Noto Sans",
    "Noto Sans CJK SC",
    "sans-serif",
]
FONT_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=FONT, font_mono=FONT_MONO)


def mount(blocks: gr.Blocks, path: str = PATH):
    """A class decorator (above `@bentoml.service`) serving `blocks` at `path`. BentoML's own
    `mount_gradio_app` leaves a Gradio 6 Blocks without its theme and config (its page answers 500), so the
    Blocks is first prepared as Gradio's own `mount_gradio_app` does it."""
    blocks.theme = theme()
    blocks.css, blocks.js, blocks.head = "", "", ""
    blocks.head_paths, blocks.css_paths = [], []
    blocks.footer_links = []  # no API page, no "built with Gradio", no settings page
    blocks._set_html_css_theme_variables()
    blocks.transpile_to_js()
    blocks.ssr_mode = False  # client-side rendering: no Node server
    blocks.config = blocks.get_config_file()
    mount_ui = bentoml.gradio.mount_gradio_app(blocks, path=path, name="ui")

    def decorator(service):
        service = mount_ui(service)
        # BentoML turns this on: then any exception's text would reach the browser. Off, only a `gr.Error`'s
        # reason (the API's refusals) is shown; anything else is a bare "Error" and stays in the server log.
        blocks.show_error = False
        # Gradio's own routes (queue, assets, its login and upload routes) are the page's plumbing, not the
        # service's API: they stay out of its OpenAPI schema (/docs.json), which describes what clients call.
        for app, mounted, _ in service.mount_apps:
            if mounted == path:
                _hide_from_schema(app.routes)
        return service

    return decorator


def _hide_from_schema(routes) -> None:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router keeps the router
        if included is not None:
            _hide_from_schema(included.routes)
        if hasattr(route, "include_in_schema"):
            route.include_in_schema = False


def service_url(request: gr.Request) -> str:
    """The service's own base URL: the socket this request arrived on (a wildcard bind is reached on
    loopback). Never the Host header, which the client writes."""
    scope = request.request.scope
    host, port = scope.get("server") or ("127.0.0.1", 3000)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{scope.get('scheme', 'http')}://{host}:{port}"


def refusal(response: httpx.Response) -> str:
    """The message of an error response (the guard makes every one OpenAI-shaped)."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = ""
    return str(message)[:1000] or f"the service answered HTTP {response.status_code}"


async def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` as JSON; the response's JSON, or `gr.Error` with the service's reason."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as err:
        raise gr.Error(f"the service did not answer ({type(err).__name__})") from None
    if response.status_code >= 400:
        raise gr.Error(refusal(response))
    return response.json()


async def stream_events(url: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """POST `body` and yield the JSON of each server-sent `data:` event until `[DONE]`; a refusal before the
    stream starts, or an error event in it, is `gr.Error` with the service's message."""
    try:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT) as client,
            client.stream("POST", url, json=body, headers={"accept": "text/event-stream"}) as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                raise gr.Error(refusal(response))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if isinstance(event.get("error"), dict):
                    raise gr.Error(str(event["error"].get("message") or "the answer failed"))
                yield event
    except httpx.HTTPError as err:
        raise gr.Error(f"the service did not answer ({type(err).__name__})") from None
