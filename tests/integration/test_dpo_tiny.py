"""The `dpo` flow under real Prefect and a real MLflow store, on a tiny random-init Llama (built from a config,
SmolLM2's tokenizer and chat template): pairs validated by row and field, held out, rendered; LoRA with TRL's
DPO loss and its per-step rewards in MLflow; held-out preference accuracy and reward margin for base and
candidate; gate, registry, ONNX parity, Bento. And `model.base: registry:NAME`, the champion's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.dpo import dpo
from llmpath.recipes import parse_recipe
from tests.conftest import make_tiny_llama, task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
THINGS = ["car", "house", "kite", "boat", "chair", "door", "cup", "hat", "bike", "lamp"]


def write_pairs(path: Path) -> Path:
    """Learnable toy preferences: the chosen answer names the colour, the rejected one (as long) says `unknown`
    (a preference a tiny model learns in a few steps and carries over to held-out prompts); plus two broken rows."""
    rows = []
    for c in COLOURS:
        for t in THINGS:
            rows.append(
                {
                    "conversations": [{"from": "human", "value": f"Colour of the {c} {t}?"}],
                    "chosen": {"from": "gpt", "value": f"The {t} is {c}."},
                    "rejected": {"from": "gpt", "value": f"The {t} is unknown."},
                }
            )
    rows += [
        {"conversations": [{"from": "human", "value": "x"}], "chosen": {"from": "gpt", "value": "a"}},
        {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},
    ]
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def tiny_model(smollm2_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama-dpo")
    make_tiny_llama(smollm2_tokenizer, hidden=64).save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def dpo_recipe(data_dir: Path, model: Path | str, name: str) -> dict:
    write_pairs(data_dir / "toy_pairs.json")
    return {
        "name": name,
        "kind": "dpo",
        "registered_model": f"{name}-dpo",
        "data": {"train": "toy_pairs.json", "validation_fraction": 0.2, "max_invalid_fraction": 0.05},
        "model": {"base": str(model), "max_length": 48},
        "dpo": {"beta": 0.5},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 2e-2, "log_every": 4},
        "eval": {"max_prompts": 4, "max_new_tokens": 8, "batch_size": 8},
        "export": {
            "quantize": False,
            "probe_prompts": 4,
        },  # fp32 ONNX only: the family's tests cover the rest
        "serve": {"bento_name": f"{name}-bento"},
    }


def test_dpo_flow_learns_preferences_gates_exports_and_packages(
    prefect_harness, home, tmp_path, monkeypatch, tiny_model
):
    import mlflow

    from llmpath.kinds.dpo import KIND
    from llmpath.sources import ModelSourceError

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    state = dpo(parse_recipe(dpo_recipe(tmp_path, tiny_model, "toy")), return_state=True)
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
    # Data: 80 good pairs, the two broken rows named by file, row and field; 16 held out.
    assert metrics["data.dropped_rows"] == 2
    assert metrics["data.train_rows"] == 64 and metrics["data.validation_rows"] == 16
    data = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data"))
    issues = (data / "row_issues.csv").read_text()
    assert (
        "toy_pairs.json,81,rejected,missing" in issues
        and "toy_pairs.json,82,rejected,same as chosen" in issues
    )

    # Training: TRL's loss fell; its rewards per step are in MLflow, the margin grew.
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(losses) == 16 and losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy = reference
    margins = [m.value for m in client.get_metric_history(run.info.run_id, "dpo.rewards_margin")]
    assert len(margins) == 16 and margins[0] == pytest.approx(0.0, abs=1e-5)
    assert sum(margins[-4:]) / 4 > 0.1 and sum(losses[-4:]) / 4 < losses[0] - 0.05, (margins, losses)
    assert {"dpo.rewards_chosen", "dpo.rewards_rejected", "dpo.rewards_accuracy"} <= set(metrics)

    # Evaluation: held-out preference accuracy rose well above the base's, with a positive reward margin
    # (the base is its own reference: 0).
    scores = {k: v for k, v in metrics.items() if k.startswith(("base.", "candidate."))}
    assert metrics["candidate.preference_accuracy"] >= metrics["base.preference_accuracy"] + 0.15, scores
    assert metrics["base.reward_margin"] == 0 and metrics["candidate.reward_margin"] > 0.1, scores
    assert metrics["candidate.reward_accuracy"] > 0.6 and metrics["eval.heldout_pairs"] == 16, scores
    table = client.load_table(run.info.experiment_id, "eval/base_vs_candidate.json", [run.info.run_id])
    assert len(table) == 16 and table["candidate_prefers_chosen"].mean() == pytest.approx(
        metrics["candidate.preference_accuracy"]
    )
    assert summary["champion"] == summary["candidate"] == "1"

    # Parity and packaging, as for every causal LM (the answers carry prompt_ids/answer_ids).
    assert metrics["parity.fp32.top1_agreement"] == 1.0
    import bentoml

    bento = bentoml.get(summary["bento"])
    assert bento.info.labels["version"] == "1"
    assert (Path(bento.path) / "src" / "service.py").read_text().count("chat/completions") >= 1

    # `registry:NAME` as the base: the champion's merged weights, identified by version.
    recipe = parse_recipe(dpo_recipe(tmp_path, "registry:toy-dpo", "again"))
    base = KIND.base_model(recipe)
    assert (base.path / "config.json").is_file() and base.revision.startswith("toy-dpo v1 ")
    with pytest.raises(ModelSourceError, match="registry:nobody: nobody has no champion"):
        KIND.base_model(parse_recipe(dpo_recipe(tmp_path, "registry:nobody", "none")))
