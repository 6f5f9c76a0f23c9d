"""Pure logic of the rag kind: token windows (semchunk, counted here in words), retrieval metrics, exact search, answer scores, the index gate,
metadata filters, prompts, and the recipe's rag sections."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bentos.rag.runtime import IndexMismatchError, check_compatible, fill_prompt, filter_expression, mean_pool
from llmpath.config import RecipeError
from llmpath.families.index.vectors import (
    collection_name,
    exact_search,
    gold_rank,
    retrieval_metrics,
    search_params,
)
from llmpath.kinds.rag.chunking import Windows, chunk_id
from llmpath.metrics.answers import exact_match, normalize_answer, token_f1
from llmpath.promotion import decide_floor
from llmpath.recipes import parse_recipe

pytestmark = pytest.mark.unit


def words(text: str) -> int:
    return len(text.split())


def test_windows_end_at_sentence_boundaries_within_the_bound_and_overlap():
    text = " ".join(f"Sentence {i} has exactly six words." for i in range(10))  # 6 "tokens" each
    windows = Windows(words, size=20, overlap=6)
    spans = windows.spans(text)
    texts = [text[a:b] for a, b in spans]
    assert all(words(t) <= 20 for t in texts) and len(texts) > 2
    assert all(t.startswith("Sentence") and t.endswith("words.") for t in texts)  # whole sentences only
    sentences = [re.findall(r"Sentence \d+ [^.]*\.", t) for t in texts]
    for a, b in zip(sentences, sentences[1:], strict=False):
        assert a[-1] == b[0] and len(set(a) & set(b)) == 1  # consecutive windows share one sentence (6 words)
    assert sorted({x for s in sentences for x in s}) == sorted(re.findall(r"Sentence \d+ [^.]*\.", text))


def test_windows_cut_at_word_boundaries_and_without_overlap():
    text = "one two three four five six seven eight nine ten eleven"  # no sentence breaks
    spans = Windows(words, size=4, overlap=0).spans(text)
    texts = [text[a:b] for a, b in spans]
    assert " ".join(texts) == text and all(words(t) <= 4 for t in texts)  # whole words, none repeated
    assert Windows(words, size=4, overlap=1).spans("short text") == [(0, 10)]  # one window when it fits
    assert Windows(words, size=4, overlap=1).spans("   ") == []


def test_chunk_ids_are_content_hashes():
    assert chunk_id("doc#1", "some text") == chunk_id("doc#1", "some text")
    assert chunk_id("doc#1", "some text") != chunk_id("doc#1", "some text.")
    assert chunk_id("doc#1", "some text") != chunk_id("doc#2", "some text")
    assert len(chunk_id("d", "t")) == 32


def test_recall_and_mrr_from_gold_ranks():
    ranks = [gold_rank(["a", "b", "c"], "a"), gold_rank(["b", "a"], "a"), gold_rank(["b", "c"], "a")]
    assert ranks == [1, 2, None]
    m = retrieval_metrics(ranks, ks=(1, 2))
    assert m["recall_at_1"] == pytest.approx(1 / 3)
    assert m["recall_at_2"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="no questions"):
        retrieval_metrics([])


def test_exact_search_orders_by_metric():
    corpus = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    query = np.array([[0.8, 0.6]], dtype=np.float32)
    order, scores = exact_search(query, corpus, 2, "COSINE")
    assert order.tolist() == [[2, 0]]
    assert scores[0, 0] == pytest.approx(0.96)
    order, _ = exact_search(query, corpus, 3, "L2")  # L2: nearest first
    assert order.tolist() == [[2, 0, 1]]


def test_mean_pool_ignores_padding_and_normalizes():
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = np.array([[1, 1, 0]])
    out = mean_pool(hidden, mask)
    assert out[0] == pytest.approx(np.array([2.0, 2.0]) / np.sqrt(8))


def test_squad_answer_scores():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("the Denver Broncos.", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert token_f1("Denver", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert token_f1("Carolina Panthers", ["Denver Broncos"]) == 0.0
    assert token_f1("Broncos won", ["Carolina", "Denver Broncos"]) == pytest.approx(0.5)


def test_index_gate_needs_the_floor_and_not_below_champion():
    assert not decide_floor("recall_at_5", 0.55, 0.6, None).promote
    first = decide_floor("recall_at_5", 0.7, 0.6, None)
    assert first.promote and "no champion" in first.reason
    assert not decide_floor("recall_at_5", 0.69, 0.6, 0.7, "1").promote
    assert decide_floor("recall_at_5", 0.7, 0.6, 0.7, "1").promote  # equal: not below


def test_filters_are_limited_to_metadata_and_quoted():
    assert filter_expression(None) == ""
    assert filter_expression({"source": "a.md", "doc_id": "x#1"}) == 'doc_id == "x#1" and source == "a.md"'
    assert filter_expression({"title": 'x" or 1==1 or "'}) == 'title == "x\\" or 1==1 or \\""'
    with pytest.raises(ValueError, match="cannot filter on 'vector'"):
        filter_expression({"vector": "1"})


def test_embedder_record_check_names_what_differs():
    record = {"embedder": "packaged:all-minilm-l6-v2", "embedder_revision": "r1", "dim": 384}
    check_compatible(record, "packaged:all-minilm-l6-v2", "r1", 384)
    with pytest.raises(IndexMismatchError, match="dim: collection 384, query side 32"):
        check_compatible(record, "packaged:all-minilm-l6-v2", "r1", 32, "c1")
    with pytest.raises(IndexMismatchError, match="embedder_revision"):
        check_compatible(record, "packaged:all-minilm-l6-v2", "r2", 384, "c1")


def test_prompt_fills_numbered_passages():
    text = fill_prompt("C:\n{context}\nQ: {question}", "why?", ["one", "two"])
    assert text == "C:\n[1] one\n\n[2] two\nQ: why?"


def test_collection_names_follow_the_build_record():
    a = collection_name("rag-squad.v1", {"dim": 384, "corpus": "x"})
    assert a.startswith("rag_squad_v1_") and a == collection_name("rag-squad.v1", {"corpus": "x", "dim": 384})
    assert a != collection_name("rag-squad.v1", {"dim": 384, "corpus": "y"})
    assert collection_name("9x", {}).startswith("c_9x_")


def test_hnsw_search_ef_is_at_least_k():
    from llmpath.families.index.config import IndexConfig

    assert search_params(IndexConfig(type="HNSW", search_params={"ef": 8}), 10) == {"ef": 10}
    assert search_params(IndexConfig(type="FLAT")) == {}


RAG = {
    "name": "r",
    "kind": "rag",
    "registered_model": "r-index",
    "corpus": {"sources": [{"path": "squad.json"}]},
}


def test_rag_recipe_defaults():
    recipe = parse_recipe(RAG)
    assert recipe.model.base == "packaged:all-minilm-l6-v2" and recipe.eval.metric == "recall_at_5"
    assert recipe.serve.bento_name == "llmpath-rag" and recipe.routing.pools == {}
    assert not hasattr(recipe, "data") and "{context}" in recipe.ask.prompt_template


@pytest.mark.parametrize(
    "change, message",
    [
        ({"corpus": None}, "corpus: missing (required: The documents to index)"),
        (
            {"data": {"train": "x.tsv"}},
            "data: not a key of a rag recipe (chat, classify, dpo, pretrain and qa recipes have it)",
        ),
        ({"eval": {"metric": "accuracy"}}, "eval.metric: Input should be 'recall_at_5' in a rag recipe"),
        ({"ask": {"prompt_template": "no slots {question}"}}, "must contain {context}"),
        ({"corpus": {"sources": [{"path": "a"}], "chunk_overlap": 64, "chunk_tokens": 64}}, "chunk_overlap"),
        ({"index": {"type": "IVF_PQ"}}, "index.type"),
    ],
)
def test_rag_recipe_mistakes_are_named(change, message):
    raw = dict(RAG) | change
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(RecipeError, match=re.escape(message)):
        parse_recipe(raw)


def test_other_kinds_refuse_rag_sections():
    raw = {
        "name": "c",
        "registered_model": "c",
        "data": {"train": "t.tsv", "labels": ["a", "b"]},
        "model": {"base": "packaged:all-minilm-l6-v2"},
    }
    parse_recipe(raw)
    with pytest.raises(RecipeError, match=r"corpus: not a key of a classify recipe \(rag recipes have it\)"):
        parse_recipe(raw | {"corpus": RAG["corpus"]})
    with pytest.raises(RecipeError, match="data: missing"):
        parse_recipe({k: v for k, v in raw.items() if k != "data"})
