from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def load_flow(entrypoint: str):
    path, _, name = entrypoint.partition(":")
    assert (ROOT / path).is_file(), entrypoint
    module = __import__(path.removesuffix(".py").replace("/", "."), fromlist=[name])
    return getattr(module, name)


def test_every_deployment_points_at_a_flow_and_a_defined_pool():
    from prefect import Flow

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {p["name"] for p in config["definitions"]["work_pools"].values()}
    for deployment in config["deployments"]:
        assert isinstance(load_flow(deployment["entrypoint"]), Flow)
        assert deployment["work_pool"]["name"] in pools
        # Quiet libraries everywhere; hub access is the flow's decision (tasks/flowrun.py), never forced here.
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["TOKENIZERS_PARALLELISM"] == "false" and "HF_HUB_OFFLINE" not in env
    # Pool templates for `llmpath up` exist for every pool the deployments use.
    for pool in pools:
        assert (ROOT / "deployments" / f"{pool}.json").is_file(), pool


def test_every_flow_has_a_deployment_and_every_routed_pool_a_stage_deployment():
    from flows import FLOWS
    from llmpath.config import RoutingConfig
    from tasks.runner import STAGE_FLOW

    by_flow = {load_flow(d["entrypoint"]).name: d for d in deployments()}
    assert {f.name for f in FLOWS.values()} | {"pipeline", "promote", "rollback", "gguf"} <= set(by_flow)
    stage_pools = {d["name"] for d in deployments() if load_flow(d["entrypoint"]).name == STAGE_FLOW}
    for d in deployments():
        if load_flow(d["entrypoint"]).name == STAGE_FLOW:
            assert d["name"] == d["work_pool"]["name"]  # llmpath-stage/<pool> runs on <pool>
    assert set(RoutingConfig().pools.values()) <= stage_pools


def test_flow_parameters_render_as_validated_forms():
    from prefect.utilities.callables import parameter_schema

    from flows.classify import classify
    from flows.pipeline import pipeline
    from flows.promote import promote
    from llmpath.recipes import kinds

    schema = parameter_schema(classify).model_dump_for_openapi()
    assert schema["required"] == ["recipe"]
    recipe = schema["definitions"]["ClassifyRecipe"]
    assert {"data", "model", "lora", "train", "eval", "export", "serve", "routing"} <= set(
        recipe["properties"]
    )
    # The form of a kind shows that kind's fields only: no rag sections, no chat-only keys.
    assert not {"corpus", "index", "ask"} & set(recipe["properties"])
    assert "quantization" not in schema["definitions"]["LoraConfig"]["properties"]
    assert "chat_format" not in schema["definitions"]["ClassifyData"]["properties"]
    assert schema["definitions"]["TrainConfig"]["properties"]["learning_rate"]["exclusiveMinimum"] == 0
    many = parameter_schema(pipeline).model_dump_for_openapi()
    items = many["properties"]["recipes"]["items"]
    assert items["discriminator"]["propertyName"] == "kind"
    assert set(items["discriminator"]["mapping"]) == set(kinds())
    assert parameter_schema(promote).model_dump_for_openapi()["required"] == ["model", "version", "reason"]


def test_a_recipe_without_kind_is_classify_in_every_flows_parameters():
    """Prefect validates a deployment's parameters against the flow's types (a run from the UI or the API):
    a recipe that omits `kind` is a classify recipe there too, as it is for `llmpath run`."""
    from flows.classify import classify
    from flows.pipeline import pipeline
    from flows.stage import run_stage

    raw = {
        "name": "t",
        "registered_model": "m",
        "model": {"base": "packaged:all-minilm-l6-v2"},
        "data": {"train": "a.tsv", "labels": ["neg", "pos"]},
    }
    assert classify.validate_parameters({"recipe": raw})["recipe"].kind == "classify"
    assert pipeline.validate_parameters({"recipes": [raw]})["recipes"][0].kind == "classify"
    stage = run_stage.validate_parameters({"stage": "finetune", "recipe": raw, "inputs": {}})
    assert type(stage["recipe"]).__name__ == "ClassifyRecipe"
