"""A Bento built from a recipe of each kind reads back exactly what the recipe said. The repository's smoke
recipes, with non-default serve (and rag: ask) values, go through the `package` stage's own code
(`serve_settings`, `build_service`: service files, bento_config.json, `bentoml build`) around stand-in models;
the packaged service, imported from the Bento's folder in a fresh interpreter, reports the recipe's values."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpath.recipes import load_recipe
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# recipe file, `--set` overrides, the service module's constants that must carry them
CASES = {
    "classify": (
        "classify-sst2-smoke.yaml",
        {
            "serve.bento_name": "cfgtest-classifier",
            "serve.port": 3123,
            "serve.max_texts": 7,
            "serve.max_latency_ms": 250,
            "serve.body_timeout_s": 2.5,
        },
        {"MAX_TEXTS": 7, "MAX_CHARS": 2000, "MAX_BATCH_SIZE": 32},
    ),
    "chat": (
        "chat-alpaca-smoke.yaml",
        {
            "serve.bento_name": "cfgtest-chat",
            "serve.port": 3125,
            "serve.max_new_tokens": 99,
            "serve.max_input_tokens": 700,
            "serve.max_chars": 5000,
        },
        {"MAX_CHARS": 5000, "MAX_INPUT_TOKENS": 700, "openai_api.MAX_NEW_TOKENS": 99},
    ),
    "rag": (
        "rag-squad-smoke.yaml",
        {
            "serve.bento_name": "cfgtest-rag",
            "serve.port": 3124,
            "serve.max_input_tokens": 900,
            "ask.k": 4,
            "ask.max_new_tokens": 12,
            "ask.prompt_template": "'Q: {question} C: {context}'",
        },
        {"MAX_INPUT_TOKENS": 900, "MAX_NEW_TOKENS": 256, "ASK.k": 4, "ASK.max_new_tokens": 12},
    ),
}
# Read inside the Bento's own folder, by the service module the Bento serves.
PROBE = """
import json, sys
import service
names = json.loads(sys.argv[2])
value = lambda path: eval(path, vars(service))
svc = getattr(service, sys.argv[1])
print(json.dumps({
    "config": service.CONFIG.model_dump(mode="json"),
    "schemas": [sys.modules[type(service.CONFIG).__module__].__file__, sys.modules["serve_config"].__file__],
    "name": svc.name,
    "http": svc.config.get("http"),
    "constants": {n: value(n) for n in names},
}))
"""


def stand_in_model(name: str) -> str:
    import bentoml

    with bentoml.models.create(name, labels={"registered_model": "cfgtest"}) as model:
        Path(model.path, "weights.txt").write_text("not a model: the service is imported, never started")
    return str(model.tag)


@pytest.mark.parametrize("kind", list(CASES))
def test_a_bento_reads_back_what_its_recipe_said(kind, home):
    import bentoml

    from llmpath.recipes import kind_named
    from tasks.package import build_service, serve_settings

    recipe_file, overrides, constants = CASES[kind]
    recipe = load_recipe(ROOT / "recipes" / recipe_file, [f"{k}={v}" for k, v in overrides.items()])
    name = recipe.serve.bento_name
    if kind == "rag":  # what llmpath.families.index.package.import_index returns, less its packages
        models = [stand_in_model(f"{name}-index"), stand_in_model(f"{name}-chat")]
        packaged = {
            "index_model_tag": models[0],
            "chat_model_tag": models[1],
            "search_params": {"ef": 77},
            "embed_max_length": recipe.model.max_length,
        }
    else:
        models = [stand_in_model(f"{name}-onnx")]
        packaged = {"model_tag": models[0]}
    config = serve_settings(recipe, packaged)
    spec = kind_named(kind).family.bento
    labels = {"registered_model": recipe.registered_model, "version": "1"}
    bento = build_service(config, spec, labels, models, [])
    assert bento.info.labels["version"] == "1" and [s.name for s in bento.info.services] == [name]

    src = Path(bentoml.get(str(bento.tag)).path_of("src"))
    assert json.loads((src / "bento_config.json").read_text()) == config.model_dump(mode="json")
    tag_vars = ("LLMPATH_CLASSIFIER_MODEL", "LLMPATH_CHAT_MODEL", "LLMPATH_RAG_INDEX", "LLMPATH_RAG_CHAT")
    env = {k: v for k, v in os.environ.items() if k not in tag_vars}  # the file alone decides
    service_class = spec.service_class
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, service_class, json.dumps(list(constants))],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    # The Bento's own copies of its settings module and of the shared base, not the repository's.
    own, base = (Path(f) for f in seen["schemas"])
    assert (own.parent, own.name) == (src, Path(inspect.getfile(spec.config)).name)
    assert (base.parent, base.name) == (src, "serve_config.py")

    # Exactly what the recipe said, field by field, in the Bento's service.
    assert seen["config"] == config.model_dump(mode="json")
    for key, value in overrides.items():
        section, field = key.split(".")
        value = value.strip("'") if isinstance(value, str) else value
        if section == "ask":
            assert seen["config"]["ask"][field] == value == getattr(recipe.ask, field)
        else:
            assert seen["config"][field] == value
    for key, value in packaged.items():
        assert seen["config"][key] == value
    assert seen["name"] == name and seen["http"] == {"host": "127.0.0.1", "port": overrides["serve.port"]}
    assert seen["constants"] == constants
