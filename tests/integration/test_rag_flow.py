"""The `rag` flow under real Prefect, a real MLflow store and a real Milvus Lite file: a hand-made SQuAD-format
article plus a Markdown folder, the packaged MiniLM (through its ONNX export, checked against PyTorch), a tiny
random-init Llama as the chat model. Then the registry rules: a re-run reuses the collection and its version,
an index below the floor is registered but not promoted, and a run that fails after registering undoes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.rag import rag
from llmpath.families.index import vectors
from llmpath.recipes import parse_recipe
from tests.conftest import make_tiny_llama
from tests.integration.test_rag_index import HAND_MADE, QUESTIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ANSWERS = {
    "volcano": "Mount Etna",
    "bread": "wild yeast",
    "chess": "the king",
    "moon": "27 days",
    "python": "tuples",
    "whale": "blue whale",
}


def write_corpus(root: Path) -> None:
    paragraphs = [
        {
            "context": HAND_MADE[key],
            "qas": [
                {"id": f"q-{key}", "question": q, "answers": [{"text": ANSWERS[key], "answer_start": 0}]}
                for q, gold in QUESTIONS.items()
                if gold == key
            ],
        }
        for key in HAND_MADE
    ]
    (root / "squad_tiny.json").write_text(
        json.dumps({"data": [{"title": "Hand_made", "paragraphs": paragraphs}]})
    )
    notes = root / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "gardening.md").write_text(
        "# Gardening\n\nTomatoes need full sun and regular watering.\n\n"
        "Compost improves soil structure over a few seasons."
    )
    (notes / "trains.txt").write_text(
        "High-speed trains in Japan are called Shinkansen and run on dedicated lines."
    )


@pytest.fixture(scope="module")
def chat_model(smollm2_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-chat")
    make_tiny_llama(smollm2_tokenizer, hidden=32).save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def recipe_for(chat_model: Path, **changes):
    raw = {
        "name": "rag-tiny",
        "kind": "rag",
        "registered_model": "rag-tiny-index",
        "corpus": {"sources": [{"path": "squad_tiny.json"}, {"path": "notes"}], "chunking": "paragraph"},
        "index": {"type": "FLAT", "onnx": True},
        "eval": {"floor": 0.8},
        "ask": {"chat_model": str(chat_model), "k": 2, "sample": 3, "max_new_tokens": 6},
    }
    for section, values in changes.items():
        raw[section] = raw.get(section, {}) | values
    return parse_recipe(raw)


def test_rag_flow_indexes_evaluates_registers_and_packages(home, prefect_harness, chat_model, monkeypatch):
    import bentoml
    import mlflow

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(home))
    monkeypatch.delenv("LLMPATH_MILVUS_URI", raising=False)
    write_corpus(home)
    summary = rag(recipe_for(chat_model))
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    m, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert m["corpus.documents"] == 8 and m["corpus.questions"] == 6 and m["index.rows"] == m["corpus.chunks"]
    # The ONNX embedder reproduces PyTorch before it embeds anything.
    assert m["embedder.onnx_min_cosine"] >= 0.99
    # Six questions whose paragraph is unmistakable: found first, by Milvus and by exact search alike.
    assert m["retrieval.recall_at_1"] == m["retrieval.exact.recall_at_1"] == 1.0 and m["retrieval.mrr"] == 1.0
    assert m["retrieval.recall_ratio_at_10"] == 1.0 and m["retrieval.overlap_at_10"] == 1.0
    assert {"qa.rag.exact_match", "qa.rag.f1", "qa.closed_book.f1"} <= set(m) and m["qa.questions"] == 3
    answers = client.load_table(run.info.experiment_id, "eval/answers.json", [run.info.run_id])
    assert len(answers) == 3 and {"question", "passages", "answer", "closed_book", "reference"} <= set(
        answers
    )
    assert json.loads(answers["passages"][0])[0]["text"] == HAND_MADE["volcano"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/retrieval.json", "eval/recall_at_k.png"} <= artifacts

    # Registry: a version naming the collection and its build; champion points at it.
    version = client.get_model_version_by_alias("rag-tiny-index", "champion")
    vt = version.tags
    assert (
        str(version.version) == "1"
        and vt["collection"] == summary["index collection"] == tags["index.collection"]
    )
    assert vt["embedder"] == "packaged:all-minilm-l6-v2" and vt["dim"] == "384" and vt["metric"] == "COSINE"
    assert vt["embedder_backend"] == "onnx" and vt["index_type"] == "FLAT"
    assert json.loads(vt["chunking"])["chunking"] == "paragraph" and vt["corpus_fingerprint"].startswith(
        "sha256:"
    )
    with vectors.connect(str(home / "milvus" / "llmpath.db")) as milvus:
        record = vectors.read_record(milvus, vt["collection"])
        assert vectors.count(milvus, vt["collection"]) == m["corpus.chunks"]
    assert record["corpus_fingerprint"] == vt["corpus_fingerprint"] and record["dim"] == 384
    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["version"] == "1" and [s.name for s in bento.info.services] == ["llmpath-rag"]
    assert {str(mm.tag).split(":")[0] for mm in bento.info.models} == {
        "llmpath-rag-index",
        "llmpath-rag-chat",
    }

    # The same recipe again: the same collection and version, no new rows, champion kept.
    again = rag(recipe_for(chat_model))
    assert again["index collection"] == summary["index collection"] and again["model version"].endswith("v1")
    assert "already the champion" in again["promotion"]
    assert again["stage embed"].startswith("cached")
    with vectors.connect(str(home / "milvus" / "llmpath.db")) as milvus:
        assert vectors.count(milvus, vt["collection"]) == m["corpus.chunks"]

    # A bigger corpus is another collection and version. One of its questions points at a paragraph that
    # does not answer it, while six notes about capitals do: recall@5 is 6/7, below the floor of 0.9, so the
    # index is registered but champion stays on v1.
    write_hard_corpus(home)
    sources = [
        {"path": "squad_tiny.json"},
        {"path": "notes"},
        {"path": "squad_hard.json"},
        {"path": "cities"},
    ]
    low = rag(recipe_for(chat_model, corpus={"sources": sources}, eval={"floor": 0.9}))
    assert low["index collection"] != summary["index collection"] and low["model version"].endswith("v2")
    assert low["retrieval recall_at_5"] == pytest.approx(6 / 7)
    assert low["champion"] == "1" and "below the floor" in low["promotion"]
    assert str(client.get_model_version_by_alias("rag-tiny-index", "champion").version) == "1"
    assert client.get_model_version("rag-tiny-index", "2").tags["promotion.decision"] == "kept"


def write_hard_corpus(root: Path) -> None:
    para = {
        "context": "A sourdough starter is fed flour and water every day to keep it active.",
        "qas": [
            {"id": "q-hard", "question": "What is the capital of France?", "answers": [{"text": "Paris"}]}
        ],
    }
    (root / "squad_hard.json").write_text(json.dumps({"data": [{"title": "Hard", "paragraphs": [para]}]}))
    cities = root / "cities"
    cities.mkdir(exist_ok=True)
    for city, country in [
        ("Paris", "France"),
        ("Berlin", "Germany"),
        ("Madrid", "Spain"),
        ("Rome", "Italy"),
        ("Lisbon", "Portugal"),
        ("Vienna", "Austria"),
    ]:
        (cities / f"{city.lower()}.md").write_text(
            f"{city} is the capital city of {country}, a country in Europe."
        )


def test_a_run_failing_after_registration_undoes_it(home, prefect_harness, chat_model, monkeypatch):
    import mlflow

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(home))
    write_corpus(home)
    first = rag(recipe_for(chat_model))
    assert first["champion"] == "1"
    # Another chunking promotes (recall 1.0 >= floor and champion), then the answer stage cannot find its chat
    # model: the run fails, its version is removed and champion goes back to v1.
    broken = recipe_for(
        chat_model, corpus={"min_chars": 10}, ask={"chat_model": "registry:no-such-chat-model"}
    )
    with pytest.raises(LookupError, match="no-such-chat-model has no champion"):
        rag(broken)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("rag-tiny-index", "champion").version) == "1"
    assert [str(v.version) for v in client.search_model_versions("name='rag-tiny-index'")] == ["1"]
    # The gate approved v2, but champion moves last: the failed run never moved it, so nothing was undone.
    from tasks import aliases

    assert [(m.action, m.to_version) for m in aliases.history("rag-tiny-index")] == [("gate", "1")]
    failed = client.search_runs(
        [client.get_experiment_by_name("rag-tiny").experiment_id], "attributes.status = 'FAILED'"
    )
    assert len(failed) == 1 and "no-such-chat-model" in failed[0].data.tags["llmpath.error"]
