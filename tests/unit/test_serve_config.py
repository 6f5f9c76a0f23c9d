"""The serve config schema (bentos/serve_config.py's base, each Bento's own *_config.py): its defaults are what a
recipe of each kind gets when it does not set the key, a recipe's values arrive unchanged, and a bad file is
refused naming the file and field."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from bentos import serve_config
from bentos.chat.chat_config import ChatServe
from bentos.classifier.classifier_config import ClassifierServe
from bentos.rag.rag_config import AskSettings, RagServe
from tests.conftest import ROOT

try:  # the recipe classes of each kind, where the kind registry exists
    from llmpath.recipes import parse_recipe
except ImportError:  # one recipe class
    from llmpath.config import parse_recipe

# The smallest valid recipe of each kind (recipes/*-smoke.yaml, less everything optional): no serve, no ask.
MINIMAL = {
    "classify": {
        "name": "c",
        "kind": "classify",
        "registered_model": "c",
        "data": {"train": "t.tsv", "labels": ["neg", "pos"]},
        "model": {"base": "packaged:all-minilm-l6-v2"},
    },
    "chat": {
        "name": "c",
        "kind": "chat",
        "registered_model": "c",
        "data": {"train": "alpaca.json"},
        "model": {"base": "packaged:smollm2-135m-instruct"},
    },
    "rag": {
        "name": "r",
        "kind": "rag",
        "registered_model": "r",
        "corpus": {"sources": [{"path": "squad.json"}]},
    },
}
# Each kind's Bento config (its family's BentoSpec.config).
MODELS = {"classify": ClassifierServe, "chat": ChatServe, "rag": RagServe}
# What packaging fills in from the store and the index, not from the recipe.
PACKAGED = {
    "classify": {"model_tag": "c-onnx:v1"},
    "chat": {"model_tag": "c-onnx:v1"},
    "rag": {"index_model_tag": "r-index:v1", "chat_model_tag": "r-chat:v1", "search_params": {"ef": 64}},
}


def config_of(raw: dict, packaged: dict | None = None) -> serve_config.BaseServe:
    """What tasks/package.py builds from a recipe: its serve section and the sections its Bento reads (rag:
    ask), with what the index's manifest carries (rag: the embedder's max_length)."""
    recipe = parse_recipe(raw)
    model = MODELS[recipe.kind]
    extra = {
        section: getattr(recipe, section).model_dump(
            include=set(model.model_fields[section].annotation.model_fields)
        )
        for section in model.SECTIONS
    }
    if "embed_max_length" in model.PACKAGED:
        extra["embed_max_length"] = recipe.model.max_length
    return serve_config.from_recipe_sections(model, recipe.serve.model_dump(), extra | (packaged or {}))


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_the_defaults_are_what_a_recipe_of_the_kind_gets(kind):
    """The drift test: every field a recipe does not set has the schema's default (the value the service uses
    when serving from source), except what packaging fills in."""
    model = MODELS[kind]
    built, default = config_of(MINIMAL[kind]), model()
    own = set(model.model_fields) - set(model.TAG_ENV) - {"search_params"}  # the index's: set at packaging
    differ = {
        f: (getattr(built, f), getattr(default, f)) for f in own if getattr(built, f) != getattr(default, f)
    }
    assert differ == {}, f"recipe value vs serve_config default: {differ}"


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_the_recipe_section_is_the_bentos_schema(kind):
    """One schema: a recipe's serve section is an instance of the settings class its Bento's config extends,
    so every key a recipe may set is a key the service reads, with the same default."""
    serve = parse_recipe(MINIMAL[kind]).serve
    model = MODELS[kind]
    assert issubclass(model, type(serve)) and type(serve) is not serve_config.ServeSettings
    assert set(type(serve).model_fields) <= set(model.model_fields)
    if "ask" in model.SECTIONS:
        assert issubclass(type(parse_recipe(MINIMAL[kind]).ask), AskSettings)


NON_DEFAULT = {
    "classify": {"serve": {"bento_name": "x-cls", "port": 3123, "max_texts": 7, "max_latency_ms": 250}},
    "chat": {"serve": {"bento_name": "x-chat", "max_new_tokens": 99, "body_timeout_s": 2.5}},
    "rag": {
        "serve": {"port": 3124, "max_input_tokens": 900},
        "ask": {"k": 4, "max_new_tokens": 12, "prompt_template": "{context} / {question}", "sample": 2},
        "model": {"max_length": 128},
    },
}


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_what_the_recipe_says_arrives_and_round_trips(kind, tmp_path):
    raw = MINIMAL[kind] | NON_DEFAULT[kind]
    config = config_of(raw, PACKAGED[kind])
    sections = NON_DEFAULT[kind]
    for key, value in sections["serve"].items():
        assert getattr(config, key) == value
    for key, value in sections.get("ask", {}).items():
        if key in AskSettings.model_fields:
            assert getattr(config.ask, key) == value
    for key, value in PACKAGED[kind].items():
        assert getattr(config, key) == value
    serve_config.write(tmp_path, config)
    assert serve_config.read(tmp_path, MODELS[kind]) == config
    assert json.loads((tmp_path / serve_config.FILE).read_text())["kind"] == kind


def test_a_key_no_bento_reads_is_refused_at_packaging():
    """The message names the Bento's own settings file, where the keys it reads are."""
    with pytest.raises(
        serve_config.ServeConfigError,
        match=r"max_textz: unknown field \(not in bentos/classifier/classifier_config\.py\)",
    ):
        serve_config.from_recipe_sections(ClassifierServe, {"max_textz": 3}, {})
    with pytest.raises(
        serve_config.ServeConfigError, match=r"ask\.top_k: unknown field \(not in bentos/rag/rag_config\.py\)"
    ):
        serve_config.from_recipe_sections(RagServe, {}, {"ask": {"top_k": 3}})
    # Another Bento's setting is not this one's: a chat recipe cannot even say it (its section is ChatSettings).
    with pytest.raises(
        serve_config.ServeConfigError,
        match=r"max_texts: unknown field \(not in bentos/chat/chat_config\.py\)",
    ):
        serve_config.from_recipe_sections(ChatServe, {"max_texts": 3}, {})


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_each_bento_config_lives_beside_its_service(kind):
    """serve_config.py is in every kind's code version, so it holds no one Bento's settings: each Bento's
    Serve class (its family's BentoSpec.config) is in a module beside that Bento's service."""
    from llmpath.recipes import kind_named

    bento = kind_named(kind).family.bento
    assert bento.config is MODELS[kind]
    assert Path(inspect.getfile(bento.config)).parent == ROOT / "bentos" / bento.folder
    assert not any(
        isinstance(v, type) and issubclass(v, serve_config.BaseServe) and v is not serve_config.BaseServe
        for v in vars(serve_config).values()
    )


def test_no_file_gives_the_defaults_and_the_environment_names_the_model(tmp_path, monkeypatch):
    for var in ("LLMPATH_CLASSIFIER_MODEL", "LLMPATH_CHAT_MODEL", "LLMPATH_RAG_INDEX", "LLMPATH_RAG_CHAT"):
        monkeypatch.delenv(var, raising=False)
    assert serve_config.read(tmp_path, ClassifierServe) == ClassifierServe()
    monkeypatch.setenv("LLMPATH_CHAT_MODEL", "tiny-chat-onnx:abc")
    monkeypatch.setenv("LLMPATH_RAG_INDEX", "idx:1")
    assert serve_config.read(tmp_path, ChatServe).model_tag == "tiny-chat-onnx:abc"
    rag = serve_config.read(tmp_path, RagServe)
    assert rag.index_model_tag == "idx:1" and rag.chat_model_tag == "llmpath-rag-chat:latest"
    # The environment wins over a packaged file too (as the services always did).
    serve_config.write(tmp_path, ChatServe(model_tag="packaged:1"))
    assert serve_config.read(tmp_path, ChatServe).model_tag == "tiny-chat-onnx:abc"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "classify", "max_texts": 0}', r"max_texts: Input should be greater than 0"),
        ('{"kind": "classify", "port": "http"}', r"port: Input should be a valid integer"),
        ('{"kind": "classify", "body_timeout_s": NaN}', r"body_timeout_s: Input should be a finite number"),
        ('{"kind": "classify", "max_new_tokens": 5}', r"max_new_tokens: unknown field"),
        ('{"kind": "rag"}', r"kind: Input should be 'classify'"),
        ('{"kind": "classify", "max_texts": 1', r"not a JSON serve config"),
        ("[1, 2]", r"a serve config is a JSON object, not list"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_field(tmp_path, content, message):
    (tmp_path / serve_config.FILE).write_text(content)
    with pytest.raises(serve_config.ServeConfigError, match=message) as err:
        serve_config.read(tmp_path, ClassifierServe)
    assert str(tmp_path / serve_config.FILE) in str(err.value)


def test_the_rag_prompt_template_must_name_its_fields(tmp_path):
    with pytest.raises(
        serve_config.ServeConfigError, match=r"ask\.prompt_template: must contain \{context\}"
    ):
        serve_config.from_recipe_sections(RagServe, {}, {"ask": {"prompt_template": "{question}"}})
