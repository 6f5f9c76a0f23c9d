"""Corpus reading and chunking with the real MiniLM tokenizer, and a real Milvus Lite file: content-hash
upserts that count once (twice in a row, and after a writer killed mid-ingest), the query-side check against a
collection's record, and recall computed on a hand-made corpus whose answers are known."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bentos.rag.runtime import Embedder, IndexMismatchError, check_compatible, read_record, search
from llmpath.data import DataError
from llmpath.families.index import vectors
from llmpath.families.index.config import IndexConfig
from llmpath.kinds.rag.chunking import chunk_corpus, chunk_document
from llmpath.kinds.rag.corpus import Document, read_corpus
from llmpath.kinds.rag.recipe import CorpusConfig, CorpusSource
from llmpath.sources import resolve_model

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoTokenizer

    path = resolve_model("packaged:all-minilm-l6-v2").path
    return path, AutoTokenizer.from_pretrained(path)


def cfg(**kw) -> CorpusConfig:
    return CorpusConfig(sources=[CorpusSource(path="unused")], **kw)


def shared_text(a: str, b: str) -> str:
    """The longest end of `a` that `b` starts with."""
    return next((a[i:] for i in range(len(a)) if b.startswith(a[i:])), "")


def test_token_windows_end_at_word_boundaries_and_overlap_by_up_to_the_configured_tokens(minilm):
    _, tok = minilm
    words = ["apple", "river", "antidisestablishmentarianism", "Shinkansen", "music", "photosynthesis"]
    sentences = [
        " ".join(words[(i * 7 + j) % 6] for j in range(3 + i % 5)).capitalize() + "." for i in range(120)
    ]
    text = " ".join(sentences)  # long words are several word pieces each: a token window would split them
    chunks = chunk_document(
        Document("d", text, "s.md"), cfg(chunking="tokens", chunk_tokens=66, chunk_overlap=16), tok
    )
    ids = [tok(c.text, add_special_tokens=False)["input_ids"] for c in chunks]
    assert len(chunks) > 3 and all(len(i) <= 64 for i in ids)  # 66 minus [CLS] and [SEP]
    for chunk in chunks:
        start = text.index(chunk.text)
        end = start + len(chunk.text)
        assert start == 0 or not text[start - 1].isalnum(), chunk.text  # never starts inside a word
        assert end == len(text) or not text[end].isalnum(), chunk.text  # never ends inside one
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = shared_text(a.text, b.text).strip()
        assert (
            shared and len(tok(shared, add_special_tokens=False)["input_ids"]) <= 16
        )  # they overlap, within it
    assert text.startswith(chunks[0].text) and text.endswith(chunks[-1].text)  # nothing cut off at the ends
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_paragraph_chunks_keep_short_paragraphs_whole_and_cut_long_ones(minilm):
    _, tok = minilm
    long = " ".join(["alpha beta gamma delta"] * 100)
    doc = Document("d", f"# Title\n\nFirst paragraph here.\n\n\n{long}\n\nok", "s.md")
    chunks = chunk_document(
        doc, cfg(chunking="paragraph", chunk_tokens=64, chunk_overlap=8, min_chars=10), tok
    )
    texts = [c.text for c in chunks]
    assert texts[0] == "First paragraph here." and "# Title" not in texts  # headings are below min_chars
    assert len(texts) > 3 and all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 62 for t in texts)
    assert "ok" not in texts  # shorter than min_chars
    # The same document chunks to the same ids; a chunk met twice (this text repeats) is kept once.
    settings = cfg(chunking="paragraph", chunk_tokens=64, chunk_overlap=8, min_chars=10)
    once, twice = chunk_corpus([doc], settings, tok), chunk_corpus([doc, doc], settings, tok)
    assert [c.id for c in twice] == [c.id for c in once] == list(dict.fromkeys(c.id for c in chunks))
    assert len(once) < len(chunks)


def test_sources_squad_folder_and_jsonl(tmp_path, monkeypatch, minilm):
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    squad = {
        "data": [
            {
                "title": "Tiny_Article",
                "paragraphs": [
                    {
                        "context": "Paris is the capital of France.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "What is the capital of France?",
                                "answers": [{"text": "Paris"}],
                            }
                        ],
                    },
                    {"context": "   ", "qas": []},
                ],
            }
        ]
    }
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Rivers\n\nThe Nile is long.\n\nThe Amazon is wide.")
    (tmp_path / "notes" / "b.txt").write_text("Plain text file about mountains.")
    (tmp_path / "docs.jsonl").write_text(
        "\n".join(
            json.dumps(r) for r in [{"body": "first doc text"}, {"other": 1}, {"body": ""}, {"body": "x y z"}]
        )
    )
    sources = [
        CorpusSource(path="squad.json"),
        CorpusSource(path="notes"),
        CorpusSource(path="docs.jsonl", text_field="body"),
    ]
    corpus = read_corpus(CorpusConfig(sources=sources, max_invalid_fraction=0.5))
    docs = {d.doc_id: d for d in corpus.documents}
    assert docs["squad.json#0.0"].title == "Tiny Article"
    assert docs["a.md"].title == "Rivers" and docs["b.txt"].title == "b"
    assert "docs.jsonl#1" in docs and "docs.jsonl#4" in docs
    assert [(q.qid, q.doc_id, q.answers) for q in corpus.questions] == [("q1", "squad.json#0.0", ("Paris",))]
    problems = {str(i) for i in corpus.issues}
    assert "squad.json: row 2: data[0].paragraphs[1].context: empty text" in problems
    assert (
        "docs.jsonl: row 2: body: missing" in problems and "docs.jsonl: row 3: body: empty text" in problems
    )
    # Too many unusable documents: the run stops, naming them.
    with pytest.raises(
        DataError, match=r"(?s)3 of 8 documents are unusable .*docs.jsonl: row 2: body: missing"
    ):
        read_corpus(CorpusConfig(sources=sources))
    chunks = chunk_corpus(corpus.documents, CorpusConfig(sources=sources, min_chars=3), minilm[1])
    assert {c.doc_id for c in chunks} == set(docs)


def _chunks(n: int, dim: int = 8, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = [
        {
            "id": f"{i:032x}",
            "text": f"chunk {i}",
            "source": "s.md",
            "doc_id": f"d{i}",
            "title": "",
            "position": 0,
        }
        for i in range(n)
    ]
    return rows, v


RECORD = {"embedder": "test", "embedder_revision": "r1", "dim": 8, "metric": "COSINE"}


def test_upserts_count_each_chunk_once(tmp_path):
    rows, v = _chunks(50)
    uri = str(tmp_path / "m.db")
    cfg_ = IndexConfig(type="FLAT")
    with vectors.connect(uri) as client:
        assert vectors.create_collection(client, "c", 8, cfg_, RECORD)
        vectors.upsert_chunks(client, "c", rows, v, batch_size=16)
        vectors.upsert_chunks(client, "c", rows, v, batch_size=7)  # a re-run: the same ids again
        assert vectors.count(client, "c") == 50
        assert not vectors.create_collection(client, "c", 8, cfg_, RECORD)  # same build: reused
        with pytest.raises(IndexMismatchError, match="another build record"):
            vectors.create_collection(client, "c", 8, cfg_, RECORD | {"dim": 16})
    with vectors.connect(uri) as client:  # reopened: the rows are on disk
        assert vectors.count(client, "c") == 50 and read_record(client, "c") == RECORD


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from llmpath.families.index import vectors
    from llmpath.families.index.config import IndexConfig
    from tests.integration.test_rag_index import RECORD, _chunks

    rows, v = _chunks(400)
    with vectors.connect({uri!r}) as client:
        vectors.create_collection(client, "c", 8, IndexConfig(type="HNSW"), RECORD)
        def slow(written):
            print(written, flush=True)
            time.sleep(0.3)
        vectors.upsert_chunks(client, "c", rows, v, batch_size=20, after_batch=slow)
    """
)


def test_a_writer_killed_mid_ingest_then_rerun_leaves_each_chunk_once(tmp_path):
    uri = str(tmp_path / "m.db")
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT), uri=uri))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    written = 0
    deadline = time.monotonic() + 120
    while written < 100 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        written = int(line)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no close: a crash
    proc.wait()
    assert 100 <= written < 400, "the writer should have been killed part-way"
    rows, v = _chunks(400)
    with vectors.connect(uri) as client:
        partial = vectors.count(client, "c")
        assert 100 <= partial < 400
        vectors.create_collection(client, "c", 8, IndexConfig(type="HNSW"), RECORD)  # the rerun
        vectors.upsert_chunks(client, "c", rows, v, batch_size=64)
        assert vectors.count(client, "c") == 400


def test_query_side_must_match_the_collection(tmp_path, minilm):
    rows, v = _chunks(10)
    with vectors.connect(str(tmp_path / "m.db")) as client:
        vectors.create_collection(client, "c", 8, IndexConfig(type="FLAT"), RECORD)
        vectors.upsert_chunks(client, "c", rows, v)
        record = read_record(client, "c")
        # A 384-dim MiniLM query against an 8-dim collection: refused with the reason, never a silent answer.
        with pytest.raises(IndexMismatchError, match="dim: collection 8, query side 384"):
            check_compatible(record, "test", "r1", Embedder(minilm[0]).dim, "c")
        with pytest.raises(IndexMismatchError, match="query vectors have 384 dimensions; 'c' has 8"):
            search(client, "c", np.zeros((1, 384), np.float32), 3, "COSINE", dim=record["dim"])
        hits = search(client, "c", v[:1], 3, "COSINE", dim=8)
        assert hits[0][0]["id"] == rows[0]["id"] and hits[0][0]["score"] == pytest.approx(1.0, abs=1e-5)


HAND_MADE = {
    "volcano": "Mount Etna in Sicily is one of the most active volcanoes in Europe, erupting lava often.",
    "bread": "Sourdough bread rises because of wild yeast and lactic acid bacteria in the starter.",
    "chess": "In chess, castling moves the king two squares toward a rook in a single turn.",
    "moon": "The Moon orbits Earth about every 27 days and always shows the same face.",
    "python": "Python lists are mutable sequences, while tuples cannot be changed after creation.",
    "whale": "The blue whale is the largest animal known to have lived, longer than a basketball court.",
}
QUESTIONS = {
    "Which active volcano is in Sicily?": "volcano",
    "What makes sourdough rise?": "bread",
    "How does castling work in chess?": "chess",
    "How long does the Moon take to orbit the Earth?": "moon",
    "Can you change a tuple in Python?": "python",
    "What is the largest animal ever?": "whale",
}


@pytest.mark.parametrize("index_type", ["FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"])
def test_recall_on_a_hand_made_corpus_with_known_answers(tmp_path, minilm, index_type):
    embedder = Embedder(minilm[0], "torch", batch_size=4)
    docs = [Document(k, t, "hand.md") for k, t in HAND_MADE.items()]
    chunks = [c.__dict__ for c in chunk_corpus(docs, cfg(min_chars=5), minilm[1])]
    c_vec = embedder.encode([c["text"] for c in chunks])
    q_vec = embedder.encode(list(QUESTIONS))
    assert np.allclose(np.linalg.norm(c_vec, axis=1), 1.0, atol=1e-5)
    index = IndexConfig(type=index_type, params={"nlist": 2} if index_type == "IVF_FLAT" else {})
    with vectors.connect(str(tmp_path / "m.db")) as client:
        vectors.create_collection(client, "hand", c_vec.shape[1], index, RECORD | {"dim": 384})
        vectors.upsert_chunks(client, "hand", chunks, c_vec)
        found = search(client, "hand", q_vec, 3, "COSINE", vectors.search_params(index, 3))
    ranks = [
        vectors.gold_rank([h["doc_id"] for h in hits], gold)
        for hits, gold in zip(found, QUESTIONS.values(), strict=True)
    ]
    assert vectors.retrieval_metrics(ranks, ks=(1, 3)) == {"recall_at_1": 1.0, "recall_at_3": 1.0, "mrr": 1.0}
    exact, _ = vectors.exact_search(q_vec, c_vec, 3, "COSINE")
    assert [chunks[row[0]]["doc_id"] for row in exact] == list(QUESTIONS.values())
    # A question whose answer is nowhere: its gold is not retrieved, and recall says so.
    ranks.append(vectors.gold_rank([h["doc_id"] for h in found[0]], "missing-doc"))
    assert vectors.retrieval_metrics(ranks, ks=(1,))["recall_at_1"] == pytest.approx(6 / 7)


def test_llmpath_validate_reports_the_corpus_and_names_bad_rows(tmp_path, monkeypatch, capsys):
    from llmpath.cli import main

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    rows = [{"text": f"document number {i} about rivers and hills"} for i in range(30)] + [{"txt": "typo"}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    # The gate needs evaluation questions (a corpus without any is refused up front): one SQuAD paragraph.
    paragraph = {
        "context": "Rivers run between the hills.",
        "qas": [{"question": "What runs?", "answers": [{"text": "Rivers"}]}],
    }
    (tmp_path / "qa.json").write_text(json.dumps({"data": [{"title": "T", "paragraphs": [paragraph]}]}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nkind: rag\nregistered_model: r-index\n"
        "corpus:\n  sources: [{path: docs.jsonl}, {path: qa.json}]\n  max_invalid_fraction: 0.05\n"
    )
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "| documents | 31 |" in out and "docs.jsonl: row 31: text: missing" in out
    recipe.write_text(recipe.read_text().replace("0.05", "0.01"))
    assert main(["validate", str(recipe)]) == 2
    assert "1 of 32 documents are unusable" in capsys.readouterr().err
