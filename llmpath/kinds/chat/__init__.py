"""The chat kind: instruction tuning of a decoder LM with LoRA or QLoRA, gated on ROUGE-L, served OpenAI-style."""

from __future__ import annotations

from pathlib import Path

from llmpath.families.causal_lm import FAMILY
from llmpath.kinds.chat.recipe import ChatRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import Evaluation, PreparedData


class Chat(Kind):
    name = "chat"
    module = __name__
    recipe = ChatRecipe
    family = FAMILY
    smoke_recipe = "chat-alpaca-smoke.yaml"
    summary = "Instruction tuning (Alpaca, messages, ShareGPT, tool calls) with LoRA/QLoRA: ROUGE-L or call-accuracy gate, ONNX, OpenAI API"

    def check_inputs(self, recipe) -> None:
        from llmpath.data import check_split, check_split_sizes
        from llmpath.kinds.chat.data import validate_rows

        names = filter(None, (recipe.data.train, recipe.data.validation))
        check_split_sizes([check_split(recipe.data, name, validate_rows) for name in names])

    def check_data(self, recipe) -> CheckedData:
        from llmpath.kinds.chat.data import check_data

        return check_data(recipe)

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        from llmpath.kinds.chat.data import prepare

        return prepare(recipe, run_id)

    def objective(self, recipe):
        from llmpath.kinds.chat.objective import ChatObjective

        return ChatObjective()

    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        from llmpath.kinds.chat.evaluate import score_chat

        return score_chat(recipe, data, run_id, name, model_dir)

    def eval_key(self, recipe) -> dict:
        key = {"prompts": recipe.eval.max_prompts, "max_new_tokens": recipe.eval.max_new_tokens}
        if recipe.eval.metric != "rouge_l":  # the default stays out, so ROUGE-L runs keep their cache
            key["metric"] = recipe.eval.metric
        return {"chat": key}

    def compare(self, recipe, base: Evaluation, candidate: Evaluation, run_id: str) -> None:
        from llmpath.kinds.chat.evaluate import log_comparison

        log_comparison(base, candidate, run_id)  # the answers the gate weighs, side by side in MLflow


KIND = Chat()
