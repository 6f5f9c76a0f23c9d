from pathlib import Path

import pytest

from llmpath.config import RecipeBase, RecipeError
from llmpath.recipes import load_recipe

pytestmark = pytest.mark.unit
RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))

MINIMAL = """
name: t
registered_model: t-model
data: {train: a.tsv, labels: [neg, pos]}
model: {base: packaged:all-minilm-l6-v2}
"""


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {
        "classify-sst2.yaml",
        "classify-sst2-smoke.yaml",
        "chat-alpaca.yaml",
        "chat-alpaca-smoke.yaml",
        "chat-alpaca-qlora.yaml",
        "chat-alpaca-zh.yaml",
        "dpo-smollm2.yaml",
        "dpo-smollm2-smoke.yaml",
        "rag-squad.yaml",
        "rag-squad-smoke.yaml",
        "chat-toolcall.yaml",
        "chat-toolcall-smoke.yaml",
        "qa-squad.yaml",
        "qa-squad-smoke.yaml",
        "pretrain-gpt.yaml",
        "pretrain-gpt-smoke.yaml",
    }


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, RecipeBase) and type(recipe).__name__.lower().startswith(recipe.kind)
    assert recipe.model.base and recipe.name == path.stem
    if recipe.kind == "classify":
        assert recipe.data.labels and recipe.eval.metric in {"accuracy", "macro_f1"}
    elif recipe.kind == "rag":
        assert recipe.corpus.sources and recipe.eval.metric == "recall_at_5" and 0 < recipe.eval.floor <= 1
        assert recipe.serve.bento_name.startswith("llmpath-rag")
    elif recipe.kind == "pretrain":
        assert (
            recipe.data.sources and recipe.model.base == "scratch" and recipe.eval.metric == "neg_perplexity"
        )
        assert recipe.serve.bento_name.startswith("llmpath-pretrain")
    elif recipe.kind == "qa":
        assert recipe.data.train.endswith(".json") and recipe.eval.metric in {"f1", "exact_match"}
        assert recipe.serve.bento_name.startswith("llmpath-qa")
    elif recipe.kind == "dpo":
        assert recipe.eval.metric == "preference_accuracy" and recipe.data.train.endswith("dpo_en_demo.json")
        assert recipe.serve.bento_name.startswith("llmpath-chat-dpo")
    else:
        # rouge_l, or call_accuracy for the tool-calling recipes (glaive function-call data)
        assert recipe.eval.metric == ("call_accuracy" if "toolcall" in recipe.name else "rouge_l")
        assert recipe.serve.bento_name.startswith("llmpath-chat")


CHAT = """
name: c
kind: chat
registered_model: c-model
data: {train: a.json}
model: {base: packaged:smollm2-135m-instruct}
"""


def test_chat_recipe_gets_chat_defaults_and_keeps_what_it_says(tmp_path):
    recipe = load_recipe(write(tmp_path, CHAT))
    assert recipe.eval.metric == "rouge_l" and recipe.export.min_agreement == 0.95
    assert recipe.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert recipe.serve.bento_name == "llmpath-chat" and recipe.model.max_length == 512
    assert recipe.lora.quantization == "none" and recipe.export.quantized_forms == [
        "int8-weight",
        "int4-weight",
    ]
    said = load_recipe(
        write(
            tmp_path,
            CHAT.replace("{base: packaged:smollm2-135m-instruct}", "{base: x, max_length: 64}")
            + "lora: {r: 4, quantization: 4bit}\n",
        )
    )
    assert said.lora.r == 4 and said.lora.quantization == "4bit" and said.model.max_length == 64
    assert said.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            CHAT.replace("{train: a.json}", "{train: a.json, labels: [a, b]}"),
            "data.labels: not a key of a chat recipe",
        ),
        (
            CHAT + "eval: {metric: accuracy}\n",
            "eval.metric: Input should be 'rouge_l' or 'call_accuracy' in a chat recipe",
        ),
        (
            MINIMAL + "eval: {metric: rouge_l}\n",
            "eval.metric: Input should be 'accuracy' or 'macro_f1' in a classify recipe",
        ),
        (
            MINIMAL + "lora: {quantization: 4bit}\n",
            "lora.quantization: not a key of a classify recipe \\(chat and dpo recipes have it\\)",
        ),
        (MINIMAL.replace(", labels: [neg, pos]", ""), "data.labels: missing \\(required: Class names"),
        (CHAT + "lora: {quantization: 2bit}\n", "lora.quantization"),
        (CHAT + "export: {quantized_forms: [int3]}\n", "export.quantized_forms.0"),
        (CHAT + "export: {block_size: 48}\n", "export.block_size: must be a power of two"),
        (CHAT.replace("{train: a.json}", "{train: a.json, columns: {answer: out}}"), "data.columns.answer"),
    ],
)
def test_kind_specific_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(write(tmp_path, text))
    assert "recipe.yaml" in str(err.value)


def test_minimal_recipe_gets_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert (
        recipe.train.batch_size == 32
        and recipe.eval.metric == "accuracy"
        and recipe.serve.host == "127.0.0.1"
    )
    assert recipe.experiment_name == "t"


def test_recipe_is_frozen(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    with pytest.raises(Exception, match="frozen"):
        recipe.train.epochs = 3


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, MINIMAL + "train: {epochz: 2}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert "train.epochz: unknown key" in str(err.value)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, MINIMAL + "train: {batch_size: lots}\n")
    with pytest.raises(RecipeError, match=r"train\.batch_size: .*integer") as err:
        load_recipe(path)
    assert "lots" not in str(err.value)  # the value itself is not quoted (it may be anything)


def test_set_overrides_apply_and_validate(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["train.epochs=2", "lora.target_modules=[query, key]", "eval.metric=macro_f1"])
    assert recipe.train.epochs == 2 and recipe.lora.target_modules == ["query", "key"]
    assert recipe.eval.metric == "macro_f1"
    with pytest.raises(RecipeError, match="eval.metric"):
        load_recipe(path, ["eval.metric=loss"])
    with pytest.raises(RecipeError, match="train.nope: unknown key"):
        load_recipe(path, ["train.nope=1"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(path, ["train.epochs"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &a [x, x]\nb: [*a, *a]\n", r"line 2, column 5: YAML aliases \(\*name\) are not allowed"),
        (MINIMAL + "name: again\n", r"line 6, column 1: key 'name' appears twice"),
        (MINIMAL + "train: " + "[" * 100 + "]" * 100 + "\n", "nested more than 32 levels deep"),
        (MINIMAL + "train: {epochs: 2\n", r"line 7, column 1: not valid YAML \(expected ',' or '}'"),
        (MINIMAL + "train: {learning_rate: .nan}\n", "train.learning_rate: Input should be a finite number"),
        (MINIMAL + "train: {epochs: .inf}\n", "train.epochs: Input should be a finite number"),
        (MINIMAL + "kind: [a]\n", "kind: not a known kind"),
        ("", "empty file"),
        ("just words\n", "a recipe is a YAML mapping .* not a str"),
    ],
)
def test_hostile_recipes_get_one_line_naming_the_place(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(write(tmp_path, text))
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path / "recipe.yaml"))


def test_set_overrides_are_parsed_as_strictly(tmp_path):
    with pytest.raises(RecipeError, match="--set train: line 1, column 2: YAML aliases"):
        load_recipe(write(tmp_path, MINIMAL), ["train=[*x]"])


def test_invalid_values_are_not_quoted(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, MINIMAL + "serve: {bento_name: 'Hunter2 Secret', port: hunter3}\n"))
    message = str(err.value)
    assert "serve.bento_name: String should match pattern" in message and "serve.port:" in message
    assert "Hunter2" not in message and "hunter3" not in message
