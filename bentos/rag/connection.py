"""A Milvus client that survives dropped connections: the indexing flow holds one across minutes of other work,
and a served worker holds one for its whole life.

Two things drop a pymilvus connection in practice. Milvus Lite's in-process gRPC server answers pymilvus's
keep-alive pings (every 10 s, even with no call in flight) with `GOAWAY too_many_pings` once a connection has sat
idle for about 30 s, and a busy host can then miss the 10 s reconnect deadline ("Fail connecting to server"). A
Milvus server can restart, or a load balancer can close an idle connection. So: Lite connections send no idle
pings, every client owns its channel (pymilvus shares one per URI across the process by default, so closing a
client never closed it), and a call that fails for want of a connection reopens the client and is tried again.

This module is the serving runtime's (the rag Bento copies it); the indexing flow uses it through
`llmpath.families.index.vectors.connect`, so both sides reconnect the same way."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("llmpath.milvus")

# Client-side keep-alive for Lite: no pings on an idle connection (the server strikes them), and at most one
# every 5 minutes during a call, which is what gRPC servers accept by default.
LITE_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 300_000,
    "grpc.keepalive_permit_without_calls": 0,
}
CONNECT_TIMEOUT_S = 60.0  # pymilvus's 10 s is too short on a loaded 2-core host
RETRIES = 4


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def is_connection_error(err: BaseException) -> bool:
    """A failure to reach the server (worth reconnecting for), not a bad request."""
    import grpc
    from pymilvus.exceptions import MilvusException

    if isinstance(err, grpc.RpcError) and hasattr(err, "code"):
        return err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    if isinstance(err, MilvusException):
        text = str(getattr(err, "message", "") or err).lower()
        # CONNECT_FAILED is code 2; pymilvus also wraps UNAVAILABLE after its own retries run out.
        return getattr(err, "code", None) == 2 or any(
            s in text
            for s in ("fail connecting", "unavailable", "goaway", "connection refused", "channel closed")
        )
    return isinstance(err, ConnectionError)


def open_client(uri: str, token: str | None = None):
    """A pymilvus client with its own channel (closed by `close()`), Lite connections without idle pings."""
    from pymilvus import MilvusClient

    kwargs: dict[str, Any] = {"dedicated": True, "timeout": CONNECT_TIMEOUT_S}
    if not is_server(uri):
        kwargs["grpc_options"] = dict(LITE_GRPC_OPTIONS)
    return MilvusClient(uri, token=os.environ.get("MILVUS_TOKEN", "") if token is None else token, **kwargs)


class ResilientClient:
    """Wraps a MilvusClient: every method call that fails for want of a connection closes the client, opens a
    new one (for Lite, restarting the in-process server if it stopped) and is tried again, with backoff. Calls
    that fail for any other reason (a bad filter, a missing collection) raise at once."""

    def __init__(
        self, uri: str, token: str | None = None, retries: int = RETRIES, opener: Callable = open_client
    ):
        self.uri, self._token, self._retries, self._opener = uri, token, retries, opener
        self.reconnects = 0
        self._loaded: set[str] = (
            set()
        )  # loaded again after a reconnect: a restarted Lite server starts released
        self._client = opener(uri, token)

    def reconnect(self) -> None:
        old, self._client = self._client, None
        if old is not None:
            with contextlib.suppress(Exception):  # a dead channel may fail to close; the new one matters
                old.close()
        self._client = self._opener(self.uri, self._token)
        self.reconnects += 1
        for name in sorted(self._loaded):
            if self._client.has_collection(name):
                self._client.load_collection(name)

    def _call(self, name: str, *args, **kwargs):
        delay = 0.5
        for attempt in range(self._retries + 1):
            try:
                if self._client is None:
                    self.reconnect()
                result = getattr(self._client, name)(*args, **kwargs)
                if name in ("load_collection", "create_collection"):
                    self._loaded.add(kwargs.get("collection_name") or args[0])
                elif name in ("release_collection", "drop_collection"):
                    self._loaded.discard(kwargs.get("collection_name") or args[0])
                return result
            except Exception as err:
                if attempt == self._retries or not is_connection_error(err):
                    raise
                log.warning(
                    "Milvus at %s: connection lost during %s (%s); reconnecting (attempt %d of %d)",
                    self.uri,
                    name,
                    type(err).__name__,
                    attempt + 1,
                    self._retries,
                )
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                try:
                    self.reconnect()
                except Exception as again:
                    if not is_connection_error(again):
                        raise
                    self._client = None  # try to open it again on the next attempt
        raise AssertionError("unreachable")

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._client is None:
            self.reconnect()
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
