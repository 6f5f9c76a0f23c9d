"""pretrain's pure logic: documents read by file, row and field; the held-out draw by document; packing into
blocks; the add-one unigram baseline's arithmetic; the recipe's shape checks."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from llmpath.files import DataError
from llmpath.kinds.pretrain.data import load_documents, pack, split_documents, unigram_perplexity
from llmpath.kinds.pretrain.recipe import PretrainData, PretrainModel

pytestmark = pytest.mark.unit


def test_pack_concatenates_documents_with_eos_and_records_their_owners():
    blocks = pack([[5, 6, 7], [8], [9, 10]], eos=0, block=3)
    assert blocks == [([5, 6, 7], [0]), ([0, 8, 0], [0, 1]), ([9, 10, 0], [2])]
    # A last piece of one token predicts nothing: dropped; a longer one is kept short.
    assert pack([[1, 2]], eos=0, block=2) == [([1, 2], [0])]
    assert pack([[1, 2, 3]], eos=0, block=3) == [([1, 2, 3], [0])]
    assert pack([[1, 2, 3, 4]], eos=0, block=3) == [([1, 2, 3], [0]), ([4, 0], [0])]


def test_unigram_perplexity_is_add_one_smoothed_frequency():
    # No counts: uniform over the vocabulary, whatever the targets.
    assert unigram_perplexity(Counter(), 50, [1, 2, 3]) == pytest.approx(50.0)
    # Counts {1: 3, 2: 1}, vocab 4: p(1) = 4/8, p(2) = 2/8, p(3) = 1/8 (never seen).
    counts = Counter({1: 3, 2: 1})
    expected = math.exp(-(math.log(4 / 8) + math.log(2 / 8) + math.log(1 / 8)) / 3)
    assert unigram_perplexity(counts, 4, [1, 2, 3]) == pytest.approx(expected)
    assert math.isnan(unigram_perplexity(counts, 4, []))


def test_held_out_documents_are_a_seeded_disjoint_draw():
    docs = [{"text": f"doc {i}", "doc": f"f#{i}"} for i in range(40)]
    train, held = split_documents(docs, 0.1, seed=7)
    assert len(held) == 4 and len(train) == 36
    assert {d["doc"] for d in train}.isdisjoint(d["doc"] for d in held)
    assert split_documents(docs, 0.1, seed=7) == (train, held)
    assert split_documents(docs, 0.1, seed=8)[1] != held
    assert len(split_documents(docs[:2], 0.01, seed=0)[1]) == 1  # at least one each side
    with pytest.raises(DataError, match="too few"):
        split_documents(docs[:1], 0.5, seed=0)


def write(path, rows, jsonl=False):
    path.write_text("\n".join(json.dumps(r) for r in rows) if jsonl else json.dumps(rows))
    return path


def test_sources_become_documents_named_by_file_and_row(tmp_path):
    write(
        tmp_path / "c4.jsonl", [{"text": "alpha beta"}, {"text": "gamma"}, {"text": "alpha beta"}], jsonl=True
    )
    write(tmp_path / "alp.json", [{"instruction": "Do it.", "input": "", "output": "Done."}])
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "A paragraph.", "qas": []}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    cfg = PretrainData(
        sources=[
            {"path": str(tmp_path / "c4.jsonl"), "format": "jsonl"},
            {
                "path": str(tmp_path / "alp.json"),
                "format": "json",
                "fields": ["instruction", "input", "output"],
            },
            {"path": str(tmp_path / "squad.json"), "format": "squad"},
        ],
        max_invalid_fraction=0.0,
    )
    docs, reports = load_documents(cfg)
    assert [d["text"] for d in docs] == ["alpha beta", "gamma", "Do it.\nDone.", "A paragraph."]
    assert docs[2]["doc"].endswith("alp.json#1")
    assert reports[0].duplicates == 1 and "duplicate" in str(reports[0].issues[0])


def test_a_bad_row_names_file_row_and_field(tmp_path):
    rows = [{"text": "fine"}, {"txt": "typo"}, {"text": 3}, {"text": "ok"}]
    path = write(tmp_path / "bad.jsonl", rows, jsonl=True)
    cfg = PretrainData(sources=[{"path": str(path), "format": "jsonl"}], max_invalid_fraction=0.1)
    with pytest.raises(DataError) as err:
        load_documents(cfg)
    assert str(path) in str(err.value)
    assert "row 2: text: missing" in str(err.value) and "row 3: text: wrong type: int" in str(err.value)
    lenient = PretrainData(sources=[{"path": str(path), "format": "jsonl"}], max_invalid_fraction=0.5)
    docs, reports = load_documents(lenient)
    assert [d["text"] for d in docs] == ["fine", "ok"] and reports[0].invalid == 2


def test_the_model_shape_is_checked():
    with pytest.raises(ValueError, match="even head size"):
        PretrainModel(hidden_size=64, heads=3)
    with pytest.raises(ValueError, match="multiple of model.kv_heads"):
        PretrainModel(hidden_size=64, heads=4, kv_heads=3)
    assert PretrainModel(hidden_size=64, heads=4, kv_heads=2).kv_heads == 2


def test_the_tokenizer_is_deterministic_and_round_trips_bytes():
    """Each machine that builds the scratch base (the flow's, a GPU worker's) trains the same tokenizer."""
    from llmpath.kinds.pretrain.base import train_tokenizer

    texts = [f"the {c} cat sat on the {d} mat" for c in ("red", "blue", "tan") for d in ("old", "new")] * 5
    first, second = (train_tokenizer(texts, 300, 2) for _ in range(2))
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    text = "the 日本 cat\t<|im_start|>x"
    ids = first(text, add_special_tokens=False)["input_ids"]
    assert first.decode(ids) == text
    assert first.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
