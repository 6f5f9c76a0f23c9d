"""The `chat` flow under real Prefect and a real MLflow store, on a tiny random-init Llama (built from a config,
SmolLM2's tokenizer and chat template): data report, LoRA, evaluation tables, gate, ONNX forms measured against
PyTorch, Bento. And QLoRA: the same finetune stage with a 4-bit (bitsandbytes) base on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.chat import chat
from llmpath.recipes import parse_recipe
from tests.conftest import make_tiny_llama, task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown"]
THINGS = ["car", "house", "kite", "boat", "chair", "door", "cup", "hat", "bike", "lamp", "book", "sock"]


def write_alpaca(path: Path, bad_rows: bool = True) -> Path:
    """Learnable toy instructions ("Colour of the red car?" -> "The car is red.") plus a few broken rows."""
    rows = [
        {"instruction": f"Colour of the {c} {t}?", "input": "", "output": f"The {t} is {c}."}
        for c in COLOURS
        for t in THINGS
    ]
    if bad_rows:
        rows += [
            {"instruction": "Say nothing.", "input": "", "output": "  "},  # empty output
            {"input": "", "output": "orphan answer"},  # missing instruction
        ]
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def tiny_chat_model(smollm2_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(smollm2_tokenizer, hidden=64).save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def chat_recipe(data_dir: Path, model: Path, name: str, **sections) -> dict:
    write_alpaca(data_dir / "toy_alpaca.json")
    raw = {
        "name": name,
        "kind": "chat",
        "registered_model": f"{name}-chat",
        "data": {
            "train": "toy_alpaca.json",
            "validation_fraction": 0.1,
            "max_invalid_fraction": 0.05,
            "overflow": "truncate",
        },
        "model": {"base": str(model), "max_length": 48},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"epochs": 3, "batch_size": 8, "learning_rate": 2e-2, "log_every": 5},
        "eval": {"max_prompts": 6, "max_new_tokens": 10},
        "export": {
            "quantized_forms": ["int8-weight", "int4-weight", "int8-dynamic"],
            "probe_prompts": 6,
            "min_agreement": 0.95,
        },
        "serve": {"bento_name": f"{name}-bento"},
    }
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values
    return raw


def test_chat_flow_trains_gates_measures_forms_and_packages(
    prefect_harness, home, tmp_path, monkeypatch, tiny_chat_model
):
    import mlflow

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    state = chat(parse_recipe(chat_recipe(tmp_path, tiny_chat_model, "toy")), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    states = task_states(
        state.state_details.flow_run_id,
        {"prepare_data", "finetune", "evaluate_base", "evaluate_candidate", "export", "parity", "package"},
    )
    assert set(states.values()) == {"Completed"}, states

    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    metrics, tags = run.data.metrics, run.data.tags
    assert run.data.params["train.quantized_layers"] == "0"  # plain LoRA: the base stays fp32
    # Data: 120 good rows, 2 broken ones named by row and field; a 10% validation split.
    assert metrics["data.dropped_rows"] == 2
    assert metrics["data.train_rows"] + metrics["data.validation_rows"] == 120
    issues = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data"))
    lines = (issues / "row_issues.csv").read_text().splitlines()
    assert any(",121,output,empty text" in line for line in lines), lines
    assert any(",122,instruction,missing" in line for line in lines), lines

    # Learning: the candidate's assistant-token loss and perplexity fell; its greedy answers beat the base's.
    assert metrics["candidate.loss"] < metrics["base.loss"] - 1.0
    assert metrics["candidate.perplexity"] < metrics["base.perplexity"]
    assert metrics["candidate.rouge_l"] > metrics["base.rouge_l"] + 0.3
    assert summary["champion"] == summary["candidate"] == "1"
    # The answers, side by side, as MLflow tables.
    table = client.load_table(run.info.experiment_id, "eval/base_vs_candidate.json", [run.info.run_id])
    assert len(table) == 6 and {"base_answer", "candidate_answer", "reference"} <= set(table.columns)
    assert table["candidate_rouge_l"].mean() == pytest.approx(metrics["candidate.rouge_l"])

    # Parity: ORT fp32 keeps PyTorch's greedy tokens; each quantized form was measured, and the one that
    # ships passed the floor.
    assert metrics["parity.fp32.top1_agreement"] == 1.0 and metrics["parity.fp32.identical"] == 1.0
    for form in ("int8-weight", "int4-weight", "int8-dynamic"):
        assert {"top1_agreement", "tokens_per_second", "size_mb"} <= {
            k.split(".")[-1] for k in metrics if k.startswith(f"parity.{form}.")
        }
    shipped = tags["deployable.form"]
    assert metrics[f"parity.{shipped}.top1_agreement"] >= 0.95
    assert shipped in tags["deployable.reason"]
    version = client.get_model_version("toy-chat", "1")
    assert version.tags["deployable.form"] == shipped and "onnx.int4-weight_uri" in version.tags

    # The Bento holds the champion's chosen form and the chat service.
    import bentoml

    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["form"] == shipped and bento.info.labels["version"] == "1"
    assert [svc.name for svc in bento.info.services] == ["toy-bento"]
    assert (Path(bento.path) / "src" / "service.py").read_text().count("chat/completions") >= 1


@pytest.mark.parametrize("bits, layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_qlora_finetune_on_cpu_merges_into_full_precision(
    home, tmp_path, monkeypatch, tiny_chat_model, bits, layer
):
    """QLoRA through the pipeline's own finetune stage: the frozen base is 4-bit nf4 or 8-bit (bitsandbytes on
    this CPU), the adapter learns, and the registered model is the adapter merged into the fp32 base."""
    import mlflow
    import torch

    from llmpath import tracking
    from llmpath.causal import assistant_loss, load_causal
    from llmpath.splits import read_split
    from tasks.data import prepare
    from tasks.runs import pipeline_run
    from tasks.train import train

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    raw = chat_recipe(tmp_path, tiny_chat_model, f"qlora-{bits}", lora={"quantization": bits})
    recipe = parse_recipe(raw)
    with pipeline_run(recipe) as run:
        data = prepare(recipe, run.run_id)
        trained = train(recipe, data, run.run_id)
        run.summary = {}
    client = mlflow.MlflowClient()
    params = client.get_run(run.run_id).data.params
    assert params["train.trainable_params"] != "0"
    assert int(params["train.quantized_layers"]) == 14  # 2 layers x 7 projections; lm_head stays fp32
    losses = [m.value for m in client.get_metric_history(run.run_id, "train_loss")]
    assert len(losses) == trained.steps and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0

    # The adapter was trained against quantized weights (above) with the layers load_causal gives...
    adapter = json.loads((tracking.download(trained.adapter_uri) / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and adapter["r"] == 8
    quantized, _ = load_causal(tiny_chat_model, bits)
    assert type(quantized.model.layers[0].self_attn.q_proj).__name__ == layer
    # ...and the registered model is plain fp32 (no bitsandbytes layers), better than the base on validation.
    merged, tokenizer = load_causal(tracking.download_model(trained.model_uri))
    assert type(merged.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    rows = read_split(data, "validation")
    base, _ = load_causal(tiny_chat_model)
    after, _ = assistant_loss(merged, rows, tokenizer.pad_token_id, 8)
    before, _ = assistant_loss(base, rows, tokenizer.pad_token_id, 8)
    assert after < before - 1.0
