"""The `pretrain` flow under real Prefect and a real MLflow store, on a tiny GPT built from the recipe (2 layers,
32 wide, a BPE of up to 1,000 tokens trained on the toy text): data report, held-out documents kept out of the tokenizer
and the model, perplexity of the trained model below the random init and below the unigram baseline, samples
table, gate, ONNX forms measured against PyTorch, Bento."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from flows.pretrain import pretrain
from llmpath.recipes import parse_recipe
from tests.conftest import task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
THINGS = ["car", "house", "kite", "boat", "chair", "door"]


def toy_documents(n: int, seed: int = 0) -> list[str]:
    """Learnable text: each sentence is `the <colour> <thing> is next to the <colour> <thing> .`, and every
    document carries a made-up word of its own (doc0042 -> 'zq' letters) that only it contains."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = [
            f"the {rng.choice(COLOURS)} {rng.choice(THINGS)} is next to the {rng.choice(COLOURS)} "
            f"{rng.choice(THINGS)} ."
            for _ in range(20)
        ]
        docs.append(" ".join(sentences) + f" marker {marker(i)} {marker(i)}")
    return docs


def marker(i: int) -> str:
    return "zq" + "".join("abcdefghij"[int(c)] for c in f"{i:03d}")


def write_toy_data(folder: Path) -> None:
    docs = toy_documents(120)
    lines = [json.dumps({"text": t}) for t in docs[:100]] + [json.dumps({"txt": "a typo'd field"})]
    (folder / "toy.jsonl").write_text("\n".join(lines))
    rows = [
        {"instruction": t.split(" marker ")[0], "input": "", "output": "marker " + t.split(" marker ")[1]}
        for t in docs[100:]
    ]
    (folder / "toy_alpaca.json").write_text(json.dumps(rows))


def pretrain_recipe(name: str) -> dict:
    return {
        "name": name,
        "kind": "pretrain",
        "registered_model": f"{name}-gpt",
        "data": {
            "sources": [
                {"path": "toy.jsonl", "format": "jsonl"},
                {"path": "toy_alpaca.json", "format": "json", "fields": ["instruction", "input", "output"]},
            ],
            "heldout_fraction": 0.1,
            "max_invalid_fraction": 0.02,
        },
        "tokenizer": {"vocab_size": 1000, "min_frequency": 2},
        "model": {"max_length": 64, "hidden_size": 32, "layers": 2, "heads": 2, "init_std": 0.05},
        "train": {"max_steps": 150, "batch_size": 8, "learning_rate": 1e-2, "log_every": 10},
        "eval": {"prompts": ["the red car", "the blue"], "max_new_tokens": 12},
        "export": {"quantized_forms": ["int8-weight"], "probe_prompts": 2, "min_agreement": 0.9},
        "serve": {"bento_name": f"{name}-bento"},
    }


def test_pretrain_flow_learns_gates_exports_and_packages(prefect_harness, home, tmp_path, monkeypatch):
    import mlflow
    from transformers import AutoTokenizer

    from llmpath import tracking

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMPATH_CACHE_DIR", str(tmp_path / "cache"))
    write_toy_data(tmp_path)
    state = pretrain(parse_recipe(pretrain_recipe("toy")), return_state=True)
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
    metrics, params = run.data.metrics, run.data.params
    # Data: 120 documents and a row with the wrong field, named by file, row and field; 12 held out.
    data = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data"))
    issues = (data / "row_issues.csv").read_text()
    assert "toy.jsonl,101,text,missing" in issues, issues
    assert metrics["data.train_documents"] == 108 and metrics["data.validation_documents"] == 12
    inputs = {i.dataset.name: i.tags[0].value for i in run.inputs.dataset_inputs}
    assert inputs == {
        "toy.jsonl + 1 more (training documents)": "training",
        "toy.jsonl + 1 more (held-out part)": "validation",
    }
    report = json.loads((data / "report.json").read_text())
    held = set(report["heldout_documents"])
    assert len(held) == 12

    # Held-out documents are in no training block, and the tokenizer never saw them: the made-up word of a
    # training document is one token (the vocabulary has room for every one), a held-out one's is not.
    import pandas as pd

    train = pd.read_parquet(data / "train.parquet")
    validation = pd.read_parquet(data / "validation.parquet")
    assert held.isdisjoint(d for docs in train["docs"] for d in docs)
    assert held == {d for docs in validation["docs"] for d in docs}
    version = client.get_model_version("toy-gpt", "1")
    model_dir = tracking.download_model(version.source)
    # Trained whole: one copy of the weights (the model), no `adapter` artifact or tag.
    assert "adapter" not in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "adapter_uri" not in version.tags and version.tags["run_id"] == run.info.run_id
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    index = {f"toy.jsonl#{i + 1}": i for i in range(100)} | {
        f"toy_alpaca.json#{i - 99}": i for i in range(100, 120)
    }
    pieces = {doc: len(tokenizer.tokenize(" " + marker(i))) for doc, i in index.items()}
    assert {pieces[d] for d in pieces if d not in held} == {1}
    assert min(pieces[d] for d in held) >= 2, {d: pieces[d] for d in held}
    # The tokenizer round-trips any text (byte-level), has ChatML tokens and template for the chat Bento.
    text = "Héllo, wörld! 日本語 <tab>\tend  \n"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|endoftext|>" and len(tokenizer) <= 1000

    # Learning: the trained model beats the random init and the unigram baseline on the held-out tokens.
    assert params["train.trainable_params"] == params["train.all_params"]  # the whole model trains
    assert metrics["base.perplexity"] > 200  # about the vocabulary size: the random init knows nothing
    assert metrics["candidate.perplexity"] < metrics["unigram.perplexity"] < metrics["base.perplexity"]
    assert metrics["candidate.neg_perplexity"] == pytest.approx(-metrics["candidate.perplexity"])
    assert metrics["base.unigram_perplexity"] == metrics["candidate.unigram_perplexity"]
    assert summary["champion"] == summary["candidate"] == "1"
    table = client.load_table(run.info.experiment_id, "eval/candidate_samples.json", [run.info.run_id])
    assert list(table["prompt"]) == ["the red car", "the blue"]
    assert table["answer"].str.contains("the|is|next").all()  # it learned the toy words

    # Parity and packaging, as for every causal LM.
    assert metrics["parity.fp32.top1_agreement"] == 1.0 and metrics["parity.fp32.identical"] == 1.0
    import bentoml

    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["version"] == "1"
    assert (Path(bento.path) / "src" / "service.py").read_text().count("chat/completions") >= 1


def test_pretrain_resumes_from_a_checkpoint_of_the_whole_model(home, tmp_path, monkeypatch):
    """The shared loop's checkpoints hold the whole model when there is no adapter: a training stopped after
    its checkpoint at step 20 resumes there and ends where an uninterrupted run ends."""
    import mlflow

    from llmpath import tracking
    from tasks.data import prepare
    from tasks.runs import pipeline_run
    from tasks.train import train

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMPATH_CACHE_DIR", str(tmp_path / "cache"))
    write_toy_data(tmp_path)
    raw = pretrain_recipe("resume")
    raw["train"] |= {"max_steps": 30, "checkpoint_every": 10, "threads": 1}
    recipe = parse_recipe(raw)

    def stop_at_25(step):
        if step == 25:  # after the checkpoint at step 20
            raise KeyboardInterrupt("stopped for the test")

    with pipeline_run(recipe) as run:
        data = prepare(recipe, run.run_id)
        run.summary = {}
    client = mlflow.MlflowClient()
    experiment = client.get_run(run.run_id).info.experiment_id
    stopped = client.create_run(experiment).info.run_id
    with pytest.raises(KeyboardInterrupt):
        train(recipe, data, stopped, on_step=stop_at_25)
    assert client.get_run(stopped).data.tags["llmpath.checkpoint_step"] == "20"
    files = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(stopped, "checkpoints/step-000020")}
    assert "model.safetensors" in files and "adapter.safetensors" not in files
    client.set_terminated(stopped, "KILLED")

    resumed = train(recipe, data, client.create_run(experiment).info.run_id)
    assert resumed.resumed_from_step == 20 and resumed.steps == 30
    fresh = train(
        parse_recipe(raw | {"name": "resume-reference"}), data, client.create_run(experiment).info.run_id
    )
    assert fresh.resumed_from_step == 0
    assert resumed.final_loss == pytest.approx(fresh.final_loss, rel=1e-4)
    assert (tracking.download_model(resumed.model_uri) / "model.safetensors").is_file()


def test_an_unchanged_pretrain_rerun_is_cached(prefect_harness, home, tmp_path, monkeypatch):
    """The scratch base (tokenizer and random init) has a stable revision: a re-run reuses every cached stage."""
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMPATH_CACHE_DIR", str(tmp_path / "cache"))
    write_toy_data(tmp_path)
    raw = pretrain_recipe("cache")
    raw["train"] |= {"max_steps": 10}
    cached = {"prepare_data", "finetune", "evaluate_base", "evaluate_candidate", "export", "parity"}
    for _run in range(2):
        state = pretrain(parse_recipe(raw), return_state=True)
        assert state.is_completed(), state
        states = task_states(state.state_details.flow_run_id, cached)
    assert {s for s, name in states.items() if name == "Cached"} == cached, states
