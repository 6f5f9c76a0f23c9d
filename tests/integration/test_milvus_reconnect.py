"""A Milvus connection survives what drops it in practice: the server striking an idle connection's keep-alive
pings (`GOAWAY too_many_pings`), and the server going away under the client. Real Milvus Lite, in a subprocess so
that gRPC's own log lines (where GOAWAY shows) can be read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pymilvus import MilvusClient
    from bentos.rag.connection import ResilientClient
    from llmpath.families.index import vectors
    from milvus_lite.server_manager import server_manager_instance

    uri, phase, idle = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rng = np.random.default_rng(0)
    rows = [{"id": i, "vector": rng.random(8).tolist()} for i in range(20)]
    query = [rows[7]["vector"]]

    def chatty(uri, token):  # pings every second even when idle: struck by the server within seconds
        opts = {"grpc.keepalive_time_ms": 1000, "grpc.keepalive_permit_without_calls": 1,
                "grpc.http2.max_pings_without_data": 0}
        return MilvusClient(uri, dedicated=True, grpc_options=opts)

    if phase == "pings":
        client = ResilientClient(uri, opener=chatty)
    else:
        connection = vectors.connect(uri)  # held: the client closes when the context manager goes
        client = connection.__enter__()
    client.create_collection("t", dimension=8, metric_type="L2")
    client.insert("t", rows)
    if phase == "restart":
        server_manager_instance.release_server(uri)  # the server goes away under the client
    print("IDLE-START", flush=True, file=sys.stderr)
    time.sleep(idle)
    print("IDLE-END", flush=True, file=sys.stderr)
    hits = client.search("t", query, limit=3)[0]
    print("TOP", hits[0]["id"], "RECONNECTS", client.reconnects, flush=True)
    client.close()
    """
)


def _run(tmp_path: Path, phase: str, idle: float) -> tuple[str, str]:
    env = os.environ | {"PYTHONPATH": str(ROOT), "GRPC_VERBOSITY": "INFO", "GRPC_TRACE": ""}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"{phase}.db"), phase, str(idle)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_idle_connection_struck_by_goaway_keeps_working(tmp_path):
    """Idle 12 s against a 1 s keep-alive window: the server sends GOAWAY too_many_pings during the idle time, and
    the next search still answers (the exact nearest row)."""
    out, err = _run(tmp_path, "pings", 12)
    idle = err[err.index("IDLE-START") : err.index("IDLE-END")]
    assert "too_many_pings" in idle, "the server did not strike the idle connection: the test proves nothing"
    assert "TOP 7 " in out


def test_default_connection_idle_past_pymilvus_keepalive(tmp_path):
    """llmpath's own connection idle for 40 s, past pymilvus's 10 s keep-alive and the ~30 s after which Milvus
    Lite strikes its pings: no GOAWAY (no idle pings are sent) and the search answers without reconnecting."""
    out, err = _run(tmp_path, "default", 40)
    assert "too_many_pings" not in err
    assert "TOP 7 RECONNECTS 0" in out


def test_server_gone_under_the_client_reconnects(tmp_path):
    """The Lite server stops while a client holds it: the next call reconnects (a new server on the same file),
    loads the collection again and answers from the rows on disk."""
    out, _ = _run(tmp_path, "restart", 0)
    assert "TOP 7 RECONNECTS 1" in out
