"""dpo's pure logic: pairs validated by row and field (never quoting them), the seeded held-out split, the
window rule, the preference metrics' arithmetic, the per-step statistics, the recipe's shape."""

from __future__ import annotations

import json
import math

import pytest

from llmpath.config import RecipeError
from llmpath.kinds.dpo.data import split_pairs
from llmpath.kinds.dpo.metrics import mean_step_metrics, preference_metrics
from llmpath.kinds.dpo.pairs import Pair, fit_window, to_pair, validate_pairs
from llmpath.recipes import parse_recipe

pytestmark = pytest.mark.unit
SECRET = "SECRET-text-never-printed"


def sharegpt(prompt: str = "Hi?", chosen: str = "Hello!", rejected: str = "Go away.", **extra) -> dict:
    return {
        "conversations": [{"from": "human", "value": prompt}],
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": rejected},
    } | extra


def test_sharegpt_and_plain_rows_become_pairs():
    pair, problems = to_pair(sharegpt())
    assert problems == [] and pair == Pair((("user", "Hi?"),), "Hello!", "Go away.")
    turns = [
        {"from": "system", "value": "Be kind."},
        {"from": "human", "value": "a"},
        {"from": "gpt", "value": "b"},
        {"from": "human", "value": "c"},
    ]
    pair, _ = to_pair(sharegpt() | {"conversations": turns})
    assert [r for r, _ in pair.prompt] == ["system", "user", "assistant", "user"]
    assert pair.messages()[-1] == {"role": "user", "content": "c"}
    pair, _ = to_pair({"prompt": "Q", "chosen": "good", "rejected": "bad"})
    assert pair == Pair((("user", "Q"),), "good", "bad")


@pytest.mark.parametrize(
    "row, expected",
    [
        ("not an object", [("(row)", "wrong type: expected an object")]),
        (
            {"chosen": "a", "rejected": "b"},
            [("(row)", "missing: none of the columns conversations or prompt")],
        ),
        (sharegpt(chosen="  "), [("chosen.value", "empty text")]),
        (sharegpt() | {"rejected": None}, [("rejected", "missing")]),
        (sharegpt() | {"rejected": 7}, [("rejected", "wrong type: expected text, got int")]),
        (
            sharegpt() | {"chosen": {"from": "human", "value": SECRET}},
            [("chosen.from", "bad role: an answer must come from gpt/assistant")],
        ),
        (
            sharegpt() | {"conversations": []},
            [("conversations", "wrong type: expected a non-empty list of turns")],
        ),
        (
            sharegpt() | {"conversations": [{"from": SECRET, "value": "x"}]},
            [
                (
                    "conversations[0].from",
                    "bad role: expected one of ['assistant', 'gpt', 'human', 'system', 'user']",
                )
            ],
        ),
        (
            sharegpt() | {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
            [("conversations", "bad role order: the prompt must end with a user turn")],
        ),
        (
            sharegpt()
            | {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
            [("conversations", "bad role order: user and assistant turns must alternate")],
        ),
        (
            sharegpt(chosen=SECRET, rejected=SECRET),
            [("rejected", "same as chosen: a pair needs two different answers")],
        ),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, [("prompt", "empty text")]),
    ],
)
def test_bad_rows_are_named_by_field_never_quoted(row, expected):
    pair, problems = to_pair(row)
    assert pair is None and problems == expected
    assert SECRET not in json.dumps(problems)


def test_validation_reports_file_row_and_field_and_drops_duplicates():
    rows = [sharegpt(), sharegpt(prompt="Other?"), sharegpt(), sharegpt(rejected=None)]
    report = validate_pairs(rows, "auto", "pairs.json")
    assert len(report.kept) == 2 and report.duplicates == 1
    assert [str(i) for i in report.issues] == [
        "pairs.json: row 3: (row): duplicate: same as row 1",
        "pairs.json: row 4: rejected.value: missing",
    ]
    assert report.invalid == 1  # the duplicate is counted apart


def test_the_held_out_split_is_seeded_and_disjoint(tmp_path, monkeypatch):
    from llmpath.kinds.dpo.recipe import DpoData

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    (tmp_path / "p.json").write_text(json.dumps([sharegpt(prompt=f"q{i}") for i in range(50)]))
    cfg = DpoData(train="p.json", validation_fraction=0.2, seed=3)
    first, _ = split_pairs(cfg)
    again, _ = split_pairs(cfg)
    other, _ = split_pairs(cfg.model_copy(update={"seed": 4}))
    assert first == again and first != other
    assert len(first["validation"]) == 10 and len(first["train"]) == 40
    assert {p.key() for p in first["train"]}.isdisjoint(p.key() for p in first["validation"])


def test_the_window_cuts_answers_keeps_the_prompt_or_drops():
    prompt, chosen, rejected = [1, 2, 3], [4, 5, 6, 7], [8, 9]
    assert fit_window(prompt, chosen, rejected, 10, "truncate") == (chosen, rejected, False)
    assert fit_window(prompt, chosen, rejected, 5, "truncate") == ([4, 5], [8, 9], True)
    assert fit_window(prompt, chosen, rejected, 5, "drop") is None
    assert fit_window(prompt, chosen, rejected, 3, "truncate") is None  # no room left for an answer token


def test_preference_metrics_arithmetic():
    # Pairs: chosen beats rejected in 2 of 3 for the model; the reference preferred chosen in 1 of 3.
    chosen, rejected = [-10.0, -5.0, -8.0], [-12.0, -4.0, -9.0]
    ref_chosen, ref_rejected = [-11.0, -5.0, -7.0], [-11.0, -6.0, -9.0]
    m = preference_metrics(chosen, rejected, 0.1, ref_chosen, ref_rejected)
    assert m["preference_accuracy"] == pytest.approx(2 / 3)
    assert m["logp_margin"] == pytest.approx((2 - 1 + 1) / 3)
    # rewards: 0.1 * ((c - rc) - (r - rr)) = 0.1 * [(1 - -1), (0 - 2), (-1 - 0)] = [0.2, -0.2, -0.1]
    assert m["reward_margin"] == pytest.approx((0.2 - 0.2 - 0.1) / 3)
    assert m["reward_accuracy"] == pytest.approx(1 / 3)
    assert m["chosen_logp"] == pytest.approx(-23 / 3)
    # The model as its own reference (the base): no reward, no reward accuracy.
    own = preference_metrics(chosen, rejected, 0.1)
    assert own["reward_margin"] == 0 and own["reward_accuracy"] == 0
    assert own["preference_accuracy"] == m["preference_accuracy"]
    with pytest.raises(ValueError, match="as many chosen as rejected"):
        preference_metrics([1.0], [], 0.1)
    with pytest.raises(ValueError, match="same pairs"):
        preference_metrics([1.0], [0.0], 0.1, [1.0, 2.0], [0.0, 0.0])


def test_step_metrics_average_what_was_collected_and_skip_non_finite():
    collected = {"rewards/margins": [0.2, 0.4, math.nan], "rewards/accuracies": [], "other": [9.0]}
    out = mean_step_metrics(collected, {"rewards/margins": "dpo.rewards_margin", "rewards/accuracies": "x"})
    assert out == {"dpo.rewards_margin": pytest.approx(0.3)}


RECIPE = {
    "name": "d",
    "kind": "dpo",
    "registered_model": "d-model",
    "data": {"train": "llamafactory-demo/dpo_en_demo.json"},
    "model": {"base": "packaged:smollm2-135m-instruct"},
}


def test_recipe_defaults_and_mistakes():
    recipe = parse_recipe(RECIPE)
    assert recipe.eval.metric == "preference_accuracy" and recipe.dpo.beta == 0.1
    assert recipe.dpo.loss_type == "sigmoid" and recipe.lora.target_modules == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    ]
    with pytest.raises(RecipeError, match=r"dpo\.beta"):
        parse_recipe(RECIPE | {"dpo": {"beta": 0}})
    with pytest.raises(RecipeError, match=r"eval\.metric"):
        parse_recipe(RECIPE | {"eval": {"metric": "rouge_l"}})
    with pytest.raises(RecipeError, match=r"data\.labels: not a key of a dpo recipe"):
        parse_recipe(RECIPE | {"data": {"train": "x.json", "labels": ["a"]}})
    assert (
        parse_recipe(RECIPE | {"model": {"base": "registry:smollm2-alpaca"}}).model.base
        == "registry:smollm2-alpaca"
    )
