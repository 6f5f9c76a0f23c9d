"""What the hostile-input suites share: a built Bento under a real `bentoml serve`, the check that an error is a
4xx with an OpenAI-shaped JSON body, raw requests no ordinary client would send (stalled uploads, wrong
framing), bursts of concurrent requests, and a bounded schemathesis run against the served OpenAPI schema."""

from __future__ import annotations

import asyncio
import socket

import httpx

from tests.conftest import bentoml_serve


def serve(tag: str, tmp_path_factory, env: dict[str, str] | None = None, timeout: float = 180.0):
    """`bentoml serve TAG` on a free loopback port (from the session's BentoML store); yields its base URL."""
    return bentoml_serve(tag, env or {}, tmp_path_factory.mktemp("serve") / "serve.log", timeout)


def assert_client_error(response: httpx.Response, status: int | None = None, mentions: tuple[str, ...] = ()):
    """A 4xx (exactly `status` if given) whose JSON body is OpenAI's error shape and names what was wrong."""
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text[:300]}"
    assert 400 <= response.status_code < 500, where
    if status is not None:
        assert response.status_code == status, where
    assert response.headers.get("content-type", "").startswith("application/json"), where
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, where
    assert error["type"] == "invalid_request_error" and error["code"], where
    assert isinstance(error["message"], str) and error["message"].strip(), where
    for word in mentions:
        assert word.lower() in error["message"].lower(), f"{word!r} not in the message; {where}"
    return error


def post_raw(base: str, path: str, body: bytes, content_type: str | None = "application/json", **headers):
    """A POST with exactly these bytes and this content type (None: no Content-Type header at all)."""
    sent = dict(headers)
    if content_type is not None:
        sent["content-type"] = content_type
    return httpx.post(f"{base}{path}", content=body, headers=sent, timeout=60)


def post_chunked(base: str, path: str, pieces: list[bytes]) -> httpx.Response:
    """A POST whose body is sent chunked (no Content-Length), as a streaming client would."""

    def body():
        yield from pieces

    return httpx.post(
        f"{base}{path}", content=body(), headers={"content-type": "application/json"}, timeout=60
    )


def stall(base: str, path: str, n: int, declared: int = 200) -> list[socket.socket]:
    """`n` connections that send a request's headers and the first bytes of a `declared`-byte JSON body, then
    nothing more: clients that opened an upload and never finished it."""
    host, port = base.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"query": "sta')
        socks.append(sock)
    return socks


def unanswered(sock: socket.socket) -> bool:
    """Whether the server has sent nothing on this connection yet (checked without waiting)."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def status_of(sock: socket.socket, timeout: float) -> int:
    """The status code the server finally answers a stalled connection with."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1


def burst(base: str, path: str, payloads: list[dict], concurrency: int, timeout: float = 300.0) -> list[int]:
    """Send every payload with at most `concurrency` in flight; the status codes, in payload order."""
    return [status for status, _ in burst_answers(base, path, payloads, concurrency, timeout)]


def burst_answers(
    base: str, path: str, payloads: list[dict], concurrency: int, timeout: float = 300.0
) -> list[tuple[int, object]]:
    """As `burst`, with each answer's JSON body: (status, body), in payload order (-1, None: no answer)."""

    async def run() -> list[tuple[int, object]]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(payload: dict) -> tuple[int, object]:
                async with gate:
                    try:
                        response = await client.post(path, json=payload)
                    except httpx.HTTPError as err:
                        return -1, repr(err)  # a dropped connection counts as a failure too
                    try:
                        return response.status_code, response.json()
                    except ValueError:
                        return response.status_code, None

            return list(await asyncio.gather(*(one(p) for p in payloads)))

    return asyncio.run(run())


def fuzz(base: str, max_examples: int) -> dict[str, list[str]]:
    """schemathesis over the served OpenAPI schema (`/docs.json`), valid and invalid examples for each POST
    operation; returns, per operation, the requests that got a 5xx or no answer."""
    import schemathesis
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base}/docs.json", timeout=30)
    failures: dict[str, list[str]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "POST":
            failures[f"POST {operation.path}"] = [
                found
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                for found in _fuzz_operation(base, operation, mode, max_examples)
            ]
    return failures


def _fuzz_operation(base: str, operation, mode, max_examples: int) -> list[str]:
    import hypothesis
    from hypothesis import HealthCheck, given, settings

    found: list[str] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def check(case):
        try:
            response = case.call(base_url=base, timeout=120)
        except Exception as err:  # no answer at all is as bad as a 5xx
            found.append(f"{case.body!r:.200}: {type(err).__name__}")
            return
        if response.status_code >= 500:
            found.append(f"{case.body!r:.200}: {response.status_code} {response.text[:200]}")

    check()
    return found
