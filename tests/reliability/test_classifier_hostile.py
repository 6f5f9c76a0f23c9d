"""The classifier Bento against hostile and merely unusual clients, through a real `bentoml serve`.

The Bento is built by the real classify flow from a tiny random-init BERT trained on toy sentiment rows (as the
integration tests do). Every bad request must be a 4xx with an OpenAI-shaped JSON error naming what was wrong;
odd but valid text (any Unicode, control characters, NUL, text that looks like special tokens) is classified;
good requests keep working; load is queued and batched, never shed or mixed up."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import tiny_recipe
from tests.reliability.hostile import (
    assert_client_error,
    burst_answers,
    fuzz,
    post_chunked,
    post_raw,
    serve,
    stall,
    status_of,
    unanswered,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
LIMIT = 65536  # serve.max_body_bytes of the Bento under test


@pytest.fixture(scope="module")
def built(prefect_harness, tiny_bert, tmp_path_factory):
    """The classify flow run once on toy data; yields the Bento tag."""
    from flows.classify import classify
    from llmpath.recipes import parse_recipe

    root = tmp_path_factory.mktemp("classifier-hostile")
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMPATH_HOME", str(root / "home"))
    mp.setenv("LLMPATH_DATA_DIR", str(root))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    raw = tiny_recipe(root, tiny_bert, name="hostile", serve={"bento_name": "hostile-classifier"})
    raw["serve"] |= {"body_timeout_s": 8, "max_body_bytes": LIMIT}
    try:
        summary = classify(parse_recipe(raw))
        assert summary["bento"].startswith("hostile-classifier:"), summary
        yield summary["bento"]
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    with serve(built, tmp_path_factory) as base:
        yield base


def classify(base: str, texts: list[str]) -> httpx.Response:
    return httpx.post(f"{base}/classify", json={"texts": texts}, timeout=60)


def good_request_works(base: str) -> None:
    response = classify(base, ["a great and superb film", "a dull and boring plot"])
    assert response.status_code == 200, response.text
    assert [r["label"] for r in response.json()] == ["pos", "neg"]  # the toy task is learned


J = "application/json"
DEEP = b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}"
# (route, body as JSON or raw bytes, content type, expected status, words the message must contain)
BAD = [
    ("/classify", {}, None, 400, ("texts",)),
    ("/classify", {"text": ["a film"]}, None, 400, ("texts",)),
    ("/classify", {"texts": []}, None, 400, ("texts",)),
    ("/classify", {"texts": None}, None, 400, ("texts",)),
    ("/classify", {"texts": "a film"}, None, 400, ("texts",)),
    ("/classify", {"texts": 5}, None, 400, ("texts",)),
    ("/classify", {"texts": True}, None, 400, ("texts",)),
    ("/classify", {"texts": {"a": "film"}}, None, 400, ("texts",)),
    ("/classify", {"texts": [""]}, None, 400, ("texts",)),
    ("/classify", {"texts": [5]}, None, 400, ("texts",)),
    ("/classify", {"texts": [-1]}, None, 400, ("texts",)),
    ("/classify", {"texts": [True]}, None, 400, ("texts",)),
    ("/classify", {"texts": [None]}, None, 400, ("texts",)),
    ("/classify", {"texts": ["ok", 1.5]}, None, 400, ("texts",)),
    ("/classify", {"texts": [["nested"]]}, None, 400, ("texts",)),
    ("/classify", {"texts": [[["deeper"]]]}, None, 400, ("texts",)),
    ("/classify", {"texts": [{"text": "x"}]}, None, 400, ("texts",)),
    ("/classify", {"texts": ["x" * 2001]}, None, 400, ("texts", "2000")),
    ("/classify", {"texts": ["超" * 2001]}, None, 400, ("texts", "2000")),
    ("/classify", {"texts": ["ok"] * 65}, None, 400, ("texts", "64")),
    ("/classify", {"texts": ["ok"] * 5000}, None, 400, ("texts",)),
    ("/classify", b'{"texts": NaN}', J, 400, ("texts",)),
    ("/classify", b'{"texts": [NaN]}', J, 400, ("texts",)),
    ("/classify", b'{"texts": [Infinity]}', J, 400, ("texts",)),
    ("/classify", b'{"texts": [-Infinity, "ok"]}', J, 400, ("texts",)),
    ("/classify", b'{"texts": [1e400]}', J, 400, ("texts",)),
    ("/classify", b'{"texts": ["ok"], "texts": 5}', J, 400, ("texts",)),
    ("/classify", b'"a film"', J, 400, ()),
    ("/classify", b"", J, 400, ()),
    ("/classify", b"{", J, 400, ("json",)),
    ("/classify", b'{"texts": ["ok"]', J, 400, ("json",)),
    ("/classify", b"texts=a+film", J, 400, ("json",)),
    ("/classify", b'{"texts": ["\\ud800"]}', J, 400, ("json",)),
    ("/classify", b'{"texts": ["\\udfff\\ud800"]}', J, 400, ("json",)),
    ("/classify", b'{"texts": ["\xff\xfe"]}', J, 400, ("json",)),
    ("/classify", b'{"texts": ["\xc3"]}', J, 400, ("json",)),
    ("/classify", DEEP, J, 400, ("json",)),
    ("/classify", json.dumps({"texts": ["ok"]}).encode(), "text/plain", 415, ("application/json",)),
    ("/classify", json.dumps({"texts": ["ok"]}).encode(), "text/json", 415, ("application/json",)),
    (
        "/classify",
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.",
        "application/vnd.bentoml+pickle",
        415,
        (),
    ),
    (
        "/classify",
        b"--b\r\nContent-Disposition: form-data; name=texts\r\n\r\nx\r\n--b--",
        "multipart/form-data; boundary=b",
        415,
        (),
    ),
    ("/classify", b"texts=a+film", "application/x-www-form-urlencoded", 415, ()),
    ("/classify", b"<texts><t>ok</t></texts>", "application/xml", 415, ()),
    ("/classify", b'{"texts": ["ok"]}', "application/octet-stream", 415, ()),
    ("/classify", b'{"texts": ["' + b"x" * 70000 + b'"]}', J, 413, (str(LIMIT),)),
    ("/nowhere", {"texts": ["ok"]}, None, 404, ()),
    ("/classify", {"texts": ["ok"] * 64 + [5]}, None, 400, ("texts",)),
]


@pytest.mark.parametrize(("route", "body", "content_type", "status", "mentions"), BAD)
def test_bad_requests_get_a_4xx_naming_the_problem(server, route, body, content_type, status, mentions):
    if isinstance(body, bytes):
        response = post_raw(server, route, body, content_type)
    else:
        response = httpx.post(f"{server}{route}", json=body, timeout=60)
    assert_client_error(response, status, mentions)
    good_request_works(server)


def test_bad_requests_are_distinct_and_enough():
    assert len({(r, repr(b), c) for r, b, c, _, _ in BAD}) == len(BAD) >= 40


def test_wrong_methods_and_a_chunked_oversized_body(server):
    assert_client_error(httpx.get(f"{server}/classify", timeout=30), 405)
    assert_client_error(httpx.put(f"{server}/classify", json={"texts": ["ok"]}, timeout=30), 405)
    response = post_chunked(server, "/classify", [b'{"texts": ["' + b"z" * 16384] * 5 + [b'"]}'])
    assert_client_error(response, 413, ("limit",))
    good_request_works(server)


ODD_BUT_VALID = [
    "Beyoncé était magnifique",
    "超级碗的表演非常精彩",
    "🍿🎬 loved it 👍🏽",
    "a\x00b",
    "tab\tnew\nline\rreturn\x01\x7f",
    "   ",
    "\u200b\u200d\ufeff",
    "\u202eevil rtl\u202c",
    "e\u0301\u0301\u0301 combining",
    "[CLS] [SEP] [MASK] [PAD] [UNK]",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "x" * 2000,
    "超" * 2000,
    "\U0010ffff\U000e0001",
]


@pytest.mark.parametrize("text", ODD_BUT_VALID, ids=lambda t: repr(t)[:24])
def test_odd_but_valid_text_is_classified(server, text):
    response = classify(server, [text, "a great and superb film"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == 2 and all(r["label"] in {"neg", "pos"} and 0.5 <= r["score"] <= 1.0 for r in body)


def test_stalled_uploads_lock_out_no_one_and_get_408(server):
    """More stalled uploads than the service has slots (64): a normal request is answered while they all
    still wait, and each stalled one gets a 408 once the body timeout (8 s here) has passed."""
    socks = stall(server, "/classify", 72)
    try:
        good_request_works(server)
        assert all(unanswered(s) for s in socks), "the normal request was served only after the stalled ones"
        assert [status_of(s, timeout=60) for s in socks] == [408] * len(socks)
    finally:
        for s in socks:
            s.close()
    good_request_works(server)


LOAD = [[f"a great and superb film {i}", f"a dull and boring plot {i}"][: 1 + i % 2] for i in range(200)]


@pytest.fixture(scope="module")
def alone(server) -> list[list[dict]]:
    """What each request of LOAD gets when it is the only one in flight."""
    answers = [classify(server, texts) for texts in LOAD]
    assert [a.status_code for a in answers] == [200] * len(LOAD)
    return [a.json() for a in answers]


@pytest.mark.parametrize("concurrency", [16, 64])
def test_load_is_queued_and_batched_not_shed_or_mixed_up(server, alone, concurrency):
    """Every request answered 200, each with its own texts' answers: batching never mixes requests up. (The
    int8 model quantizes activations per batch, so scores move a little with the batch: labels are compared
    where the answer alone was clear.)"""
    answers = burst_answers(server, "/classify", [{"texts": t} for t in LOAD], concurrency)
    assert [s for s, _ in answers] == [200] * len(LOAD), [a for a in answers if a[0] != 200][:5]
    assert [len(body) for _, body in answers] == [len(t) for t in LOAD]
    for (_, body), reference in zip(answers, alone, strict=True):
        for got, want in zip(body, reference, strict=True):
            assert abs(got["score"] - want["score"]) < 0.15
            assert want["score"] < 0.65 or got["label"] == want["label"]


def test_schemathesis_finds_no_server_error(server):
    failures = fuzz(server, max_examples=40)
    assert "POST /classify" in failures
    assert all(not found for found in failures.values()), failures
    good_request_works(server)
