"""Pure logic of the registry lock's lease: when a lease may be taken over."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from llmpath.locks import describe, is_stale

pytestmark = pytest.mark.unit
HOST = socket.gethostname()


def lease(**kw) -> dict:
    return {"owner": "h:1:x", "host": HOST, "pid": os.getpid(), "what": "register", "expires": 1000.0} | kw


def test_a_live_holder_keeps_its_lease_until_it_expires():
    assert not is_stale(lease(), now=999.0)
    assert is_stale(lease(), now=1000.5)


def test_a_dead_holder_on_this_host_loses_it_at_once():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert is_stale(lease(pid=proc.pid), now=0.0)


def test_another_hosts_holder_is_judged_by_its_expiry_only():
    assert not is_stale(lease(host="elsewhere", pid=999_999_999), now=999.0)
    assert is_stale(lease(host="elsewhere"), now=1001.0)


def test_an_unreadable_lease_counts_as_expired_and_is_described():
    assert is_stale({"owner": "?", "expires": 0}, now=1.0)
    assert describe(lease(expires=0)).startswith("h:1:x (register, expires in 0 s)")
