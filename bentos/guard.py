"""The guard every llmpath Bento sits behind: one ASGI middleware for what no service should trust a client with.

- A body over `max_body_bytes` is a 413: by its Content-Length before anything is read, and by counting
  the bytes of a chunked one as they come.
- A body must arrive within `body_timeout_s`, or it is a 408. The body is read here, before the request takes
  a working slot, so a few clients that open an upload and stall hold nothing anyone else needs.
- POST, PUT and PATCH take `application/json` only (415 otherwise): BentoML would also decode
  `application/vnd.bentoml+pickle`, i.e. run arbitrary pickle from any client, and multipart forms.
- The service's `traffic.max_concurrency` is enforced here, per endpoint and by queueing: BentoML's own limit
  answers 429 the moment it is reached, counts stalled uploads, and lets a slow endpoint's requests take every
  slot from a fast one's. Past `max_queue` requests waiting on one endpoint the answer is 503.
- Every error leaves as JSON in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, whatever
  produced it (BentoML's validation errors, Starlette's 404/405, an exception); a 5xx never carries internals.

Usage, after the class is decorated: `guard.install(MyService, max_body_bytes=..., body_timeout_s=...)`.
No Prefect, no MLflow: it is copied into each Bento beside service.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

logger = logging.getLogger("llmpath.guard")

# Probes and metrics are never held back by a queue full of work.
BYPASS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "overloaded",
}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = code or CODES.get(status, "server_error" if status >= 500 else "invalid_request")
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json.dumps({"error": error}, ensure_ascii=False).encode()


async def send_error(send, status: int, message: str, code: str | None = None, close: bool = False) -> None:
    """One JSON error response. `close`: the request body was not read to its end, so the connection
    cannot carry another request."""
    body = error_body(status, message, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def openai_error(status: int, raw: bytes) -> bytes:
    """Any error body (BentoML's, Starlette's plain text, already OpenAI-shaped) as an OpenAI error."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # BentoML wraps a 4xx exception's message in a tuple
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and "message" in error:
        return raw if status < 500 else error_body(status, _server_message(status))
    if status >= 500:  # never pass on what a server error said: it may name internals
        return error_body(status, _server_message(status))
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        return _validation_error(status, detail)
    if isinstance(error, str) and error:
        return error_body(status, error)
    if isinstance(detail, str) and detail:  # FastAPI's HTTPException
        return error_body(status, detail)
    text = raw.decode("utf-8", "replace").strip()[:300] if raw else ""
    return error_body(status, text or f"HTTP {status}")


def _server_message(status: int) -> str:
    if status == 504:
        return "the request took too long to process"
    if status == 503:
        return "the server is overloaded; retry shortly"
    return "the server failed to process this request; the error is in the server log"


def _validation_error(status: int, detail: list[dict]) -> bytes:
    """Pydantic errors ({loc, msg, type}) as one message naming each wrong field."""
    parts, params = [], []
    for item in detail[:10]:
        loc = ".".join(str(p) for p in item.get("loc") or ()) or "body"
        params.append(loc)
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    if len(detail) > 10:
        parts.append(f"and {len(detail) - 10} more")
    code = str(detail[0].get("type") or "invalid_request")
    return error_body(status, "; ".join(parts), code=code, param=params[0])


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client went away before its body arrived."""


class Guard:
    def __init__(
        self,
        app,
        max_body_bytes: int = 1 << 20,
        body_timeout_s: float = 10.0,
        max_concurrency: int | None = None,
        max_queue: int = 256,
    ) -> None:
        self.app = app
        self.max_body_bytes, self.body_timeout_s = int(max_body_bytes), float(body_timeout_s)
        self.max_concurrency, self.max_queue = max_concurrency, int(max_queue)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in BYPASS_PATHS:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        if method in BODY_METHODS:
            # Every Content-Type header counts: BentoML reads the first, a dict of them would keep the last.
            types = [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"content-type"]
            if len(types) > 1:
                return await send_error(
                    send, 415, "send one Content-Type header (application/json)", close=True
                )
            media = (types or ["application/json"])[0].split(";")[0].strip().lower()
            if media != "application/json":
                shown = media[:60] or "an empty content type"
                return await send_error(
                    send, 415, f"content type {shown} is not accepted; send application/json", close=True
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await send_error(send, 400, "Content-Length is not a number", close=True)
            if int(length) > self.max_body_bytes:
                return await send_error(
                    send,
                    413,
                    f"the body is {int(length)} bytes; the limit is {self.max_body_bytes}",
                    close=True,
                )
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.body_timeout_s)
        except TimeoutError:
            return await send_error(
                send, 408, f"the request body did not arrive within {self.body_timeout_s:g} s", close=True
            )
        except _TooLarge:
            return await send_error(
                send, 413, f"the body is over the limit of {self.max_body_bytes} bytes", close=True
            )
        except _Gone:
            return None
        replay = _Replay(body, receive)
        if not self.max_concurrency or method not in BODY_METHODS:
            return await self._call(scope, replay, send)
        # Slots per endpoint; paths past the first few dozen (a client inventing URLs) share one set.
        key = scope["path"] if scope["path"] in self._slots or len(self._slots) < 32 else "*"
        slots = self._slots.setdefault(key, asyncio.Semaphore(self.max_concurrency))
        waiting = self._waiting.get(key, 0)
        if slots.locked() and waiting >= self.max_queue:
            return await send_error(send, 503, f"{waiting} requests are already waiting; retry shortly")
        self._waiting[key] = waiting + 1
        try:
            await slots.acquire()
        finally:
            self._waiting[key] -= 1
        try:
            await self._call(scope, replay, send)
        finally:
            slots.release()

    async def _read_body(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # a chunked body has no Content-Length to check up front
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _call(self, scope, receive, send) -> None:
        """The inner app, its error responses rewritten as OpenAI errors and its exceptions as a JSON 500."""
        state = {"started": False, "status": 200, "headers": [], "chunks": []}

        async def rewrite(message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if message["status"] < 400:
                    return await send(message)
                state["status"], state["headers"] = message["status"], message.get("headers", [])
                return None
            if message["type"] != "http.response.body" or state["status"] < 400:
                return await send(message)
            state["chunks"].append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = openai_error(state["status"], b"".join(state["chunks"]))
            keep = [
                (k, v) for k, v in state["headers"] if k.lower() not in (b"content-length", b"content-type")
            ]
            headers = [
                *keep,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": state["status"], "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not state["started"]:
                await send_error(send, 500, _server_message(500))


class _Replay:
    """The body already read, handed to the app as one message; then the client's own channel (disconnects)."""

    def __init__(self, body: bytes, receive) -> None:
        self.body, self.receive, self.sent = body, receive, False

    async def __call__(self):
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        return await self.receive()


def install(
    service,
    max_body_bytes: int = 1 << 20,
    body_timeout_s: float = 10.0,
    max_queue: int = 256,
):
    """Put the guard in front of a `@bentoml.service` class. Its `traffic.max_concurrency`, if set, moves
    into the guard (BentoML's own limiter would shed at that count, and it sits outside this middleware, so
    it would count stalled uploads). A queued request holds its body: `max_queue` x `max_body_bytes` is the
    memory one endpoint's queue may take (256 MiB by default). Returns the service for chaining."""
    traffic = service.config.setdefault("traffic", {})
    max_concurrency = traffic.pop("max_concurrency", None)
    service.add_asgi_middleware(
        Guard,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout_s,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
    )
    return service
