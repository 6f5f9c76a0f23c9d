"""The dpo kind: preference tuning (DPO with TRL's loss) of a causal LM with LoRA, from SmolLM2 or a chat
recipe's champion (`registry:NAME`); gated on held-out preference accuracy; exported and served as every
causal LM is."""

from __future__ import annotations

from pathlib import Path

from llmpath.families.causal_lm import FAMILY
from llmpath.kinds.dpo.recipe import DpoRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import Evaluation, PreparedData


class Dpo(Kind):
    name = "dpo"
    module = __name__
    recipe = DpoRecipe
    family = FAMILY
    smoke_recipe = "dpo-smollm2-smoke.yaml"
    summary = (
        "Preference tuning (DPO, TRL's loss) with LoRA: held-out preference-accuracy gate, ONNX, OpenAI API"
    )

    def check_inputs(self, recipe) -> None:
        from llmpath.data import check_split, check_split_sizes
        from llmpath.kinds.dpo.data import validate_rows

        names = filter(None, (recipe.data.train, recipe.data.validation))
        check_split_sizes([check_split(recipe.data, name, validate_rows) for name in names])

    def check_data(self, recipe) -> CheckedData:
        from llmpath.kinds.dpo.data import check_data

        return check_data(recipe)

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        from llmpath.kinds.dpo.data import prepare

        return prepare(recipe, run_id)

    def base_model(self, recipe):
        from llmpath.kinds.dpo.data import resolve_base

        return resolve_base(recipe)  # `registry:NAME`: that chat model's champion

    def objective(self, recipe):
        from llmpath.kinds.dpo.objective import DpoObjective

        return DpoObjective()

    def train_key(self, recipe) -> dict:
        return {"dpo": recipe.dpo.model_dump()}

    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        from llmpath.kinds.dpo.evaluate import score_dpo

        return score_dpo(recipe, data, run_id, name, model_dir, base)

    def eval_key(self, recipe) -> dict:
        return {
            "dpo": {
                "beta": recipe.dpo.beta,
                "prompts": recipe.eval.max_prompts,
                "max_new_tokens": recipe.eval.max_new_tokens,
            }
        }

    def compare(self, recipe, base: Evaluation, candidate: Evaluation, run_id: str) -> None:
        from llmpath.kinds.dpo.evaluate import log_comparison

        log_comparison(base, candidate, run_id)


KIND = Dpo()
