"""The qa Bento (`POST /answer`) against hostile and merely unusual clients, through a real `bentoml serve`.

The Bento is built by the real qa flow from a tiny random-init BERT trained on toy SQuAD paragraphs (as the
integration test does). Every bad request must be a 4xx with an OpenAI-shaped JSON error naming what was wrong,
never a 5xx: huge, empty or whitespace-only fields, wrong types, NaN, broken JSON, wrong media types. Odd but
valid text (any Unicode, control characters, special-token look-alikes) is answered with a span whose offsets
index the context as sent."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from tests.reliability.hostile import assert_client_error, fuzz, post_chunked, post_raw, serve

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
LIMIT = 65536  # serve.max_body_bytes of the Bento under test
MAX_CONTEXT, MAX_QUESTION = 4000, 200
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
FILLER = [
    "the",
    "a",
    "town",
    "house",
    "river",
    "stone",
    "went",
    "saw",
    "near",
    "under",
    "over",
    "old",
    "road",
]


def toy_squad(path, paragraphs: int = 40, seed: int = 0) -> None:
    rng = random.Random(seed)
    out = []
    for p in range(paragraphs):
        words = [rng.choice(FILLER) for _ in range(rng.randint(10, 24))]
        colour = rng.choice(COLOURS)
        words.insert(rng.randrange(len(words)), colour)
        context = " ".join(words) + " ."
        start = f" {context} ".index(f" {colour} ")
        qas = [
            {
                "id": f"p{p}q{k}",
                "question": f"which colour {k}",
                "answers": [{"text": colour, "answer_start": start}],
            }
            for k in range(4)
        ]
        out.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"data": [{"title": "Toy", "paragraphs": out}]}))


@pytest.fixture(scope="module")
def built(prefect_harness, tiny_bert, tmp_path_factory):
    """The qa flow run once on toy data; yields the Bento tag."""
    from flows.qa import qa
    from llmpath.recipes import parse_recipe

    root = tmp_path_factory.mktemp("qa-hostile")
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMPATH_HOME", str(root / "home"))
    mp.setenv("LLMPATH_DATA_DIR", str(root))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    toy_squad(root / "toy.json")
    raw = {
        "name": "hostile-qa",
        "kind": "qa",
        "registered_model": "hostile-qa",
        "data": {"train": "toy.json"},
        "model": {"base": str(tiny_bert), "max_length": 64},
        "train": {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "log_every": 8, "threads": 2},
        "export": {"max_f1_drop": 1.0, "min_agreement": 0.0},
        "serve": {
            "bento_name": "hostile-qa",
            "stride": 16,
            "max_context_chars": MAX_CONTEXT,
            "max_question_chars": MAX_QUESTION,
            "max_body_bytes": LIMIT,
            "body_timeout_s": 8,
        },
    }
    try:
        summary = qa(parse_recipe(raw))
        assert summary["bento"].startswith("hostile-qa:"), summary
        yield summary["bento"]
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    with serve(built, tmp_path_factory) as base:
        yield base


def answer(base: str, question, context) -> httpx.Response:
    return httpx.post(f"{base}/answer", json={"question": question, "context": context}, timeout=60)


def good_request_works(base: str) -> None:
    context = "the old road near the purple stone ."
    response = answer(base, "which colour 0", context)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["answer"] == "purple" and context[body["start"] : body["end"]] == "purple"
    )  # the toy task is learned
    assert 0 < body["score"] <= 1


J = "application/json"
OK = {"question": "which colour", "context": "a red house"}
DEEP = b'{"question": "q", "context": ' + b"[" * 5000 + b"]" * 5000 + b"}"
# (body as JSON or raw bytes, content type, expected status, words the message must contain)
BAD = [
    ({}, None, 400, ("question",)),
    ({"question": "which colour"}, None, 400, ("context",)),
    ({"context": "a red house"}, None, 400, ("question",)),
    ({"question": "", "context": "a red house"}, None, 400, ("question",)),
    ({"question": "which colour", "context": ""}, None, 400, ("context",)),
    ({"question": "   ", "context": "a red house"}, None, 400, ("whitespace",)),
    ({"question": "which colour", "context": "\n\t  "}, None, 400, ("whitespace",)),
    ({"question": None, "context": "a red house"}, None, 400, ("question",)),
    ({"question": 5, "context": "a red house"}, None, 400, ("question",)),
    ({"question": True, "context": "a red house"}, None, 400, ("question",)),
    ({"question": ["which"], "context": "a red house"}, None, 400, ("question",)),
    ({"question": {"q": "which"}, "context": "a red house"}, None, 400, ("question",)),
    ({"question": "which colour", "context": 1.5}, None, 400, ("context",)),
    ({"question": "which colour", "context": ["a red house"]}, None, 400, ("context",)),
    (
        {"question": "q" * (MAX_QUESTION + 1), "context": "a red house"},
        None,
        400,
        ("question", str(MAX_QUESTION)),
    ),
    ({"question": "which colour", "context": "x" * (MAX_CONTEXT + 1)}, None, 413, (str(MAX_CONTEXT),)),
    ({"question": "which colour", "context": "東" * (MAX_CONTEXT + 1)}, None, 413, (str(MAX_CONTEXT),)),
    (b'{"question": NaN, "context": "a red house"}', J, 400, ("question",)),
    (b'{"question": "q", "context": NaN}', J, 400, ("context",)),
    (b'{"question": "q", "context": Infinity}', J, 400, ("context",)),
    (b'{"question": 1e400, "context": "a"}', J, 400, ("question",)),
    (b'"which colour"', J, 400, ()),
    (b"[]", J, 400, ()),
    (b"", J, 400, ()),
    (b"{", J, 400, ("json",)),
    (b'{"question": "q", "context": "a"', J, 400, ("json",)),
    (b'{"question": "\\ud800", "context": "a"}', J, 400, ("json",)),
    (b'{"question": "q", "context": "\xff\xfe"}', J, 400, ("json",)),
    (DEEP, J, 400, ("json",)),
    (json.dumps(OK).encode(), "text/plain", 415, ("application/json",)),
    (b"question=q&context=a", "application/x-www-form-urlencoded", 415, ()),
    (b"<q>which</q>", "application/xml", 415, ()),
    (json.dumps(OK).encode(), "application/octet-stream", 415, ()),
    (b'{"question": "q", "context": "' + b"x" * 70000 + b'"}', J, 413, (str(LIMIT),)),
]


@pytest.mark.parametrize(("body", "content_type", "status", "mentions"), BAD)
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, content_type, status, mentions):
    if isinstance(body, bytes):
        response = post_raw(server, "/answer", body, content_type)
    else:
        response = httpx.post(f"{server}/answer", json=body, timeout=60)
    assert_client_error(response, status, mentions)


def test_after_all_that_good_requests_work_and_routes_are_guarded(server):
    good_request_works(server)
    assert_client_error(httpx.get(f"{server}/answer", timeout=30), 405)
    assert_client_error(httpx.post(f"{server}/nowhere", json=OK, timeout=30), 404)
    response = post_chunked(
        server, "/answer", [b'{"question": "q", "context": "' + b"z" * 16384] * 5 + [b'"}']
    )
    assert_client_error(response, 413, ("limit",))
    info = httpx.post(f"{server}/model", json={}, timeout=30)
    assert info.status_code == 200 and info.json()["registered_model"] == "hostile-qa"


ODD_BUT_VALID = [
    "Zürich café naïve purple Beyoncé",
    "超级碗 purple 的表演非常精彩",
    "🍿🎬 purple 👍🏽 emoji",
    "a\x00b purple c",
    "tab\tnew\nline purple\rreturn\x01\x7f",
    "\u200b\u200d\ufeff purple",
    "e\u0301\u0301\u0301 purple combining",
    "[CLS] [SEP] purple [MASK] [PAD] [UNK]",
    "<script>alert(1)</script> purple",
    " ".join(["road"] * 700) + " purple",  # many windows
    "purple",
]


@pytest.mark.parametrize("context", ODD_BUT_VALID, ids=lambda t: repr(t)[:24])
def test_odd_but_valid_text_gets_a_span_that_indexes_the_context(server, context):
    response = answer(server, "which colour 0", context)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"answer", "score", "start", "end"}
    assert (
        0 <= body["start"] <= body["end"] <= len(context)
        and context[body["start"] : body["end"]] == body["answer"]
    )
    assert 0 <= body["score"] <= 1


def test_schemathesis_finds_no_server_error(server):
    failures = fuzz(server, max_examples=30)
    assert "POST /answer" in failures
    assert all(not found for found in failures.values()), failures
    good_request_works(server)
