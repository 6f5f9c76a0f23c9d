"""The pretrain kind: a small GPT (Llama architecture) trained from a random init on local text, with its own
byte-level BPE tokenizer; gated on held-out perplexity; exported and served as every causal LM is."""

from __future__ import annotations

from pathlib import Path

from llmpath.families.causal_lm import FAMILY
from llmpath.kinds.pretrain.recipe import PretrainRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import PreparedData


class Pretrain(Kind):
    name = "pretrain"
    module = __name__
    recipe = PretrainRecipe
    family = FAMILY
    smoke_recipe = "pretrain-gpt-smoke.yaml"
    summary = (
        "A small GPT from scratch with its own BPE tokenizer: held-out perplexity gate, ONNX, OpenAI API"
    )

    def check_inputs(self, recipe) -> None:
        from llmpath.kinds.pretrain.data import corpus_splits

        corpus_splits(recipe)  # every source reads, few enough bad rows, documents on both sides

    def check_data(self, recipe) -> CheckedData:
        from llmpath.kinds.pretrain.data import check_data

        return check_data(recipe)

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        from llmpath.kinds.pretrain.data import prepare

        return prepare(recipe, run_id)

    def data_files(self, recipe) -> dict[str, str]:
        from llmpath.kinds.pretrain.data import data_files

        return data_files(recipe)

    def data_key(self, recipe) -> dict:
        return {"tokenizer": recipe.tokenizer.model_dump()}

    def base_model(self, recipe):
        from llmpath.kinds.pretrain.data import scratch_base

        return scratch_base(recipe)  # the tokenizer and the random init: what training starts from

    def objective(self, recipe):
        from llmpath.kinds.pretrain.objective import PretrainObjective

        return PretrainObjective()

    def train_key(self, recipe) -> dict:
        return {"tokenizer": recipe.tokenizer.model_dump()}

    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        from llmpath.kinds.pretrain.evaluate import score_pretrain

        return score_pretrain(recipe, data, run_id, name, model_dir)

    def eval_key(self, recipe) -> dict:
        return {"pretrain": {"prompts": recipe.eval.prompts, "max_new_tokens": recipe.eval.max_new_tokens}}


KIND = Pretrain()
