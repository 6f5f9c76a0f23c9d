"""What every registered kind must have, checked for each: a smoke recipe that parses as that kind, a Prefect
deployment and a flow of its name whose form holds that kind's fields only, a Bento (its family's) with the
files it lists, a tiny-model integration test, and a description for every recipe field it declares. And
what the layout promises: no branching on `recipe.kind` outside the registry, no module over about 400 lines."""

import re
import typing
from pathlib import Path

import pytest
import yaml

from llmpath.protocol import Family, Kind
from llmpath.recipes import kinds, load_recipe, recipe_fields

ROOT = Path(__file__).resolve().parents[2]
KINDS = sorted(kinds())


def test_the_registry_finds_every_kind_folder():
    folders = {p.parent.name for p in (ROOT / "llmpath" / "kinds").glob("*/__init__.py")}
    assert folders == set(KINDS) and {"classify", "chat", "rag"} <= folders
    for kind in kinds().values():
        assert isinstance(kind, Kind) and isinstance(kind.family, Family)
        assert kind.recipe.model_fields["kind"].annotation == typing.Literal[kind.name]


@pytest.mark.parametrize("name", KINDS)
def test_a_smoke_recipe_that_parses_as_the_kind(name):
    kind = kinds()[name]
    recipe = load_recipe(ROOT / "recipes" / kind.smoke_recipe)
    assert type(recipe) is kind.recipe and recipe.kind == name


@pytest.mark.parametrize("name", KINDS)
def test_a_deployment_and_a_flow_with_the_kinds_form(name):
    from prefect.utilities.callables import parameter_schema

    from flows import FLOWS

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["name"]: d["entrypoint"] for d in config["deployments"]}
    assert entrypoints.get(name) == f"flows/{name}.py:{name}"
    flow = FLOWS[name]
    assert flow.name == name
    schema = parameter_schema(flow).model_dump_for_openapi()
    recipe_class = kinds()[name].recipe.__name__
    assert schema["properties"]["recipe"]["$ref"].endswith(f"/{recipe_class}")
    other = {f for k in KINDS if k != name for f in kinds()[k].recipe.model_fields}
    own = set(kinds()[name].recipe.model_fields)
    assert set(schema["definitions"][recipe_class]["properties"]) == own
    assert own != other  # each kind's form differs from the union of the others'


@pytest.mark.parametrize("name", KINDS)
def test_a_bento_with_the_files_its_family_lists(name):
    bento = kinds()[name].family.bento
    folder = ROOT / "bentos" / bento.folder
    for file in bento.files:
        assert (folder / file).is_file(), f"{bento.folder}/{file}"
    for source in bento.borrowed.values():
        assert (ROOT / "bentos" / source).is_file(), source
    assert re.search(rf"^class {bento.service_class}\b", (folder / "service.py").read_text(), re.M)
    assert bento.routes


@pytest.mark.parametrize("name", KINDS)
def test_a_tiny_model_integration_test(name):
    tests = list((ROOT / "tests" / "integration").glob(f"test_{name}_*.py"))
    assert tests, f"tests/integration/test_{name}_*.py"
    assert any("tiny" in t.read_text() for t in tests)


@pytest.mark.parametrize("name", KINDS)
def test_every_field_is_documented(name):
    fields = recipe_fields(kinds()[name].recipe)
    assert len(fields) > 10 and [key for key, _, description in fields if not description] == []


SOURCES = [p for d in ("llmpath", "tasks", "flows", "bentos") for p in (ROOT / d).rglob("*.py")]


@pytest.mark.parametrize("name", KINDS)
def test_a_kind_reaches_no_other_kind(name):
    from llmpath.protocol import code_files

    reached = {p.relative_to(ROOT).parts[:3] for p in code_files(kinds()[name].module)}
    others = {("llmpath", "kinds", k) for k in KINDS if k != name}
    assert not reached & others


def test_no_branching_on_the_kind_outside_the_registry():
    names = "|".join(KINDS)
    branching = re.compile(rf"\brecipe\.kind\s*(==|!=|\bin\b)|\bkind\s*(==|!=)\s*['\"]({names})['\"]")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in SOURCES
        if "kinds" not in p.parts and p.name != "recipes.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if branching.search(line) and "item.kind" not in line
    ]
    assert found == []


def test_no_module_over_about_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
