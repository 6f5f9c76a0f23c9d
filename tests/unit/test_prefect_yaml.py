from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_points_at_a_flow_and_a_defined_pool():
    from prefect import Flow

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {p["name"] for p in config["definitions"]["work_pools"].values()}
    assert config["deployments"]
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), deployment["entrypoint"]
        module = __import__(path.removesuffix(".py").replace("/", "."), fromlist=[name])
        assert isinstance(getattr(module, name), Flow)
        assert deployment["work_pool"]["name"] in pools
        assert deployment["work_pool"]["job_variables"]["env"]["HF_HUB_OFFLINE"] == "1"


def test_flow_parameters_render_as_a_recipe_form():
    from prefect.utilities.callables import parameter_schema

    from flows.classify import classify

    schema = parameter_schema(classify).model_dump_for_openapi()
    assert schema["required"] == ["recipe"]
    recipe = schema["definitions"]["Recipe"]
    assert {"data", "model", "lora", "train", "eval", "export", "serve"} <= set(recipe["properties"])
    assert schema["definitions"]["TrainConfig"]["properties"]["learning_rate"]["exclusiveMinimum"] == 0
