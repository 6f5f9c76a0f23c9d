"""prefect.yaml's recipe deployments: one per recipe file, named `<kind>/<name>`, their default the validated
recipe, written from recipes/ (this test fails when they drift)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmpath.recipes import kinds, load_recipe
from llmpath.stack import deployments

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def config() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def by_name() -> dict[str, dict]:
    """`<flow>/<deployment>` -> entry (the flow's name is the entrypoint's function name here)."""
    return {f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}": d for d in config()["deployments"]}


def test_prefect_yaml_is_up_to_date_with_recipes():
    text = (ROOT / "prefect.yaml").read_text()
    assert deployments.render(text, deployments.recipe_deployments()) == text, (
        "prefect.yaml's recipe deployments differ from recipes/: run `make deployments`"
    )


def test_every_recipe_is_a_deployment_whose_default_is_the_validated_recipe():
    from flows import FLOWS

    found = by_name()
    names = {
        "classify/sst2-smoke",
        "classify/sst2",
        "chat/alpaca-smoke",
        "chat/alpaca",
        "chat/alpaca-qlora",
        "chat/alpaca-zh",
        "rag/squad-smoke",
        "rag/squad",
    }
    assert names <= set(found)
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        entry = found[f"{recipe.kind}/{recipe.name.removeprefix(recipe.kind + '-')}"]
        assert entry["entrypoint"] == f"flows/{recipe.kind}.py:{recipe.kind}"
        assert entry["work_pool"]["name"] == "cpu-pool"
        assert entry["description"].startswith(f"recipes/{path.name}: ")
        assert {f"kind:{recipe.kind}", f"recipe:{recipe.name}", f"model:{recipe.registered_model}"} <= set(
            entry["tags"]
        )
        # What the flow's typed parameter makes of the default is exactly what `llmpath run` loads.
        validated = FLOWS[recipe.kind].validate_parameters(entry["parameters"])["recipe"]
        assert validated == recipe, path.name


def test_each_kinds_flow_deployment_defaults_to_its_smoke_recipe():
    from flows import FLOWS

    found = by_name()
    for name, kind in kinds().items():
        entry = found[f"{name}/{name}"]
        smoke = load_recipe(ROOT / "recipes" / kind.smoke_recipe)
        assert FLOWS[name].validate_parameters(entry["parameters"])["recipe"] == smoke


def test_defaults_keep_data_paths_relative_to_the_workers_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path / "somewhere"))
    text = (ROOT / "prefect.yaml").read_text()
    # Written with another data root, the file is the same: nothing in it depends on where the data are.
    assert deployments.render(text, deployments.recipe_deployments()) == text
    params = config()["definitions"]["recipes"]
    sst2 = params["classify-sst2-smoke"]["recipe"]["data"]
    assert sst2["train"] == "sst2/train.tsv" and sst2["validation"] == "sst2/dev.tsv"
    rag = params["rag-squad-smoke"]["recipe"]["corpus"]["sources"]
    assert [s["path"] for s in rag] == ["squad-v1.1-subset/dev-v1.1.json"]
    assert "/work/" not in text and "LLMPATH_DATA_DIR:" not in text


def test_a_new_recipe_file_is_a_new_deployment_and_names_stay_unique(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    source = (ROOT / "recipes" / "classify-sst2-smoke.yaml").read_text()
    (recipes / "classify-sst2-smoke.yaml").write_text(source)
    (recipes / "mine.yaml").write_text(source.replace("name: classify-sst2-smoke", "name: my-sst2"))
    found = deployments.recipe_deployments(recipes)
    assert [(d.kind, d.name) for d in found] == [("classify", "sst2-smoke"), ("classify", "my-sst2")]
    block = deployments.deployments_block(found)
    assert "  - name: my-sst2\n" in block and "    parameters: *my-sst2\n" in block
    (recipes / "twin.yaml").write_text(source.replace("name: classify-sst2-smoke", "name: sst2-smoke"))
    with pytest.raises(deployments.DeploymentsError, match="classify/sst2-smoke"):
        deployments.recipe_deployments(recipes)


def test_check_says_when_prefect_yaml_drifted(tmp_path, capsys):
    stale = tmp_path / "prefect.yaml"
    stale.write_text(
        (ROOT / "prefect.yaml").read_text().replace("max_train_rows: 1600", "max_train_rows: 16")
    )
    assert deployments.main(["--check", "--prefect-yaml", str(stale)]) == 1
    assert "make deployments" in capsys.readouterr().err
    assert deployments.main(["--prefect-yaml", str(stale)]) == 0
    assert deployments.main(["--check", "--prefect-yaml", str(stale)]) == 0
    assert stale.read_text() == (ROOT / "prefect.yaml").read_text()


def test_workers_are_not_forced_offline():
    """Hub access is each flow's decision (the CLI's rule), not the deployment's: a `hub:` recipe runs from
    the UI as from the CLI."""
    for entry in config()["deployments"]:
        env = entry["work_pool"]["job_variables"]["env"]
        assert not {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"} & set(env)
