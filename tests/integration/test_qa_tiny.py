"""The `qa` flow under real Prefect and a real MLflow store, on a tiny random-init BERT (2 layers, 32 wide) and
toy SQuAD data whose answer is the one colour word of each paragraph: bad entries named by paragraph and field,
held-out paragraphs never trained on, EM/F1 of the trained span head above the seeded base, the gate, ONNX fp32
and int8 checked span by span against PyTorch, the Bento; then the champion as the extractive reader other
kinds use (`registry:NAME`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from flows.qa import qa
from llmpath.recipes import parse_recipe
from tests.conftest import task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]
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
    "with",
    "small",
    "old",
    "tall",
    "road",
]


def toy_squad(path: Path, paragraphs: int = 40, questions: int = 4, seed: int = 0) -> None:
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
                "question": f"which colour is it {p} {k}",
                "answers": [{"text": colour, "answer_start": start}],
            }
            for k in range(questions)
        ]
        out.append({"context": context, "qas": qas})
    out[0]["qas"].append(
        {"id": "broken", "question": "x", "answers": [{"text": "nowhere", "answer_start": 0}]}
    )
    path.write_text(json.dumps({"data": [{"title": "Toy", "paragraphs": out}]}))


def qa_recipe(name: str, model: Path) -> dict:
    return {
        "name": name,
        "kind": "qa",
        "registered_model": f"{name}-qa",
        "data": {"train": "toy-squad.json", "split": "paragraph", "validation_fraction": 0.2},
        "model": {"base": str(model), "max_length": 64},
        "train": {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "log_every": 8, "threads": 2},
        "export": {"max_f1_drop": 0.05, "min_agreement": 0.8},
        "serve": {"bento_name": f"{name}-bento", "stride": 16},
    }


@pytest.fixture(scope="module")
def trained(prefect_harness, tiny_bert, tmp_path_factory):
    """The qa flow run once on toy data in a home of its own; yields (home, the flow's final state)."""
    root = tmp_path_factory.mktemp("qa-tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMPATH_HOME", str(root))
    mp.setenv("LLMPATH_DATA_DIR", str(root))
    mp.delenv("LLMPATH_ARTIFACT_ROOT", raising=False)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mp.delenv("LLMPATH_MILVUS_URI", raising=False)
    toy_squad(root / "toy-squad.json")
    try:
        yield root, qa(parse_recipe(qa_recipe("toy", tiny_bert)), return_state=True)
    finally:
        mp.undo()


def test_qa_flow_learns_gates_exports_packages_and_reads_for_others(trained):
    import bentoml
    import mlflow

    from llmpath.families.span.reader import read_passages, registry_reader

    _, state = trained  # its home stays in force (LLMPATH_HOME) for the module
    assert state.is_completed(), state
    summary = state.result()
    stages = {
        "prepare_data",
        "finetune",
        "evaluate_base",
        "evaluate_candidate",
        "export",
        "parity",
        "package",
    }
    states = task_states(state.state_details.flow_run_id, stages)
    assert set(states.values()) == {"Completed"}, states

    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    metrics = run.data.metrics
    # Data: the broken answer is named by paragraph and field; 8 of 40 paragraphs held out whole.
    data = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data"))
    issues = (data / "row_issues.csv").read_text()
    assert "Toy paragraph 1.qas[5].answers,answer_start does not point at the answer text" in issues, issues
    assert metrics["data.train_rows"] == 128 and metrics["data.validation_rows"] == 32
    report = json.loads((data / "report.json").read_text())
    assert report["shared_paragraphs"] == 0 and report["splits"]["validation"]["paragraphs"] == 8
    import pandas as pd

    train = pd.read_parquet(data / "train.parquet")
    validation = pd.read_parquet(data / "validation.parquet")
    assert set(train["context"]).isdisjoint(validation["context"])

    # Learning: the span head finds the colour; the seeded base does not.
    assert metrics["candidate.f1"] >= 0.9 and metrics["candidate.exact_match"] >= 0.9
    assert metrics["base.f1"] < 0.5
    assert summary["champion"] == summary["candidate"] == "1"
    table = client.load_table(run.info.experiment_id, "eval/candidate/answers.json", [run.info.run_id])
    assert set(table["answer"]) <= set(COLOURS) | {""}

    # Parity: each ONNX form's spans against PyTorch's; the form that ships is recorded.
    assert metrics["parity.fp32.agreement"] == 1.0 and metrics["parity.fp32.f1_drop"] == pytest.approx(
        0, abs=1e-9
    )
    assert "parity.int8.agreement" in metrics
    version = client.get_model_version("toy-qa", "1")
    assert version.tags["deployable.form"] in {"fp32", "int8"}
    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["version"] == "1"
    src = Path(bento.path) / "src"
    assert {"service.py", "runtime.py", "qa_config.py", "guard.py", "serve_config.py"} <= {
        p.name for p in src.iterdir()
    }
    assert json.loads((src / "bento_config.json").read_text())["stride"] == 16

    # The champion as an extractive reader for another kind (rag's ask.reader: registry:toy-qa).
    found = registry_reader("registry:toy-qa")
    assert found.revision.startswith("toy-qa v1 (") and found.reader.max_length == 64
    assert found.trained_questions == set(train["question"])
    got = read_passages(found.reader, "which colour is it 0", ["", "the old road near the purple stone ."])
    assert got["passage"] == 1 and got["answer"] == "purple"
    assert "the old road near the purple stone ."[got["start"] : got["end"]] == "purple"
    with pytest.raises(LookupError, match="nobody has no champion"):
        registry_reader("registry:nobody")


def test_rag_answers_with_the_qa_champion_as_its_extractive_reader(trained, smollm2_tokenizer):
    """rag on the same toy SQuAD file with `ask.reader: registry:toy-qa`: the extractive reader answers the same
    sampled questions from the same retrieved passages; EM/F1 of both readers, overall and on the questions the
    reader was not trained on, as metrics and a table."""
    import mlflow
    import pandas as pd

    from flows.rag import rag
    from tests.conftest import make_tiny_llama

    root, state = trained
    assert state.is_completed()
    chat = root / "tiny-chat"
    make_tiny_llama(smollm2_tokenizer, hidden=32).save_pretrained(chat, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(chat)
    raw = {
        "name": "rag-reader",
        "kind": "rag",
        "registered_model": "rag-reader-index",
        "corpus": {
            "sources": [{"path": "toy-squad.json"}],
            "chunking": "paragraph",
            "max_invalid_fraction": 0.05,
        },
        "index": {"type": "FLAT", "onnx": True},
        "eval": {"floor": 0.0},
        "ask": {
            "chat_model": str(chat),
            "k": 2,
            "sample": 40,
            "max_new_tokens": 4,
            "reader": "registry:toy-qa",
        },
    }
    summary = rag(parse_recipe(raw))
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    m, tags = run.data.metrics, run.data.tags
    assert tags["ask.reader"].startswith("toy-qa v1 (")
    assert {"qa.extractive.exact_match", "qa.extractive.f1", "qa.rag.f1"} <= set(m) and m[
        "qa.questions"
    ] == 40
    answers = client.load_table(run.info.experiment_id, "eval/answers.json", [run.info.run_id])
    assert set(answers["extractive"]) <= set(COLOURS) | {""}  # spans of the passages: the colour words
    qa_run = client.get_model_version("toy-qa", "1").run_id
    trained_on = set(
        pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{qa_run}/data/train.parquet"))["question"]
    )
    assert list(answers["reader_trained_on"]) == [q in trained_on for q in answers["question"]]
    held = ~answers["reader_trained_on"]
    assert m["qa.heldout.questions"] == held.sum() > 0
    assert m["qa.extractive.heldout_f1"] == pytest.approx(answers["extractive_f1"][held].mean())
    assert m["qa.rag.heldout_f1"] == pytest.approx(answers["f1"][held].mean())
    table = client.load_table(run.info.experiment_id, "eval/readers.json", [run.info.run_id])
    assert len(table) == 5 and table["reader"].str.startswith("extractive: toy-qa v1").sum() == 2
