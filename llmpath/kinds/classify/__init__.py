"""The classify kind: LoRA text classification from labelled rows to a served, quantized classifier."""

from __future__ import annotations

from pathlib import Path

from llmpath.families.classifier import FAMILY
from llmpath.kinds.classify.recipe import ClassifyRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import Evaluation, PreparedData


class Classify(Kind):
    name = "classify"
    module = __name__
    recipe = ClassifyRecipe
    family = FAMILY
    smoke_recipe = "classify-sst2-smoke.yaml"
    summary = "LoRA text classification (SST-2, ...): accuracy or macro-F1 gate, int8 ONNX, /classify Bento"

    def check_inputs(self, recipe) -> None:
        from llmpath.data import check_split, check_split_sizes

        names = filter(None, (recipe.data.train, recipe.data.validation))
        check_split_sizes([check_split(recipe.data, name) for name in names])

    def check_data(self, recipe) -> CheckedData:
        from llmpath.kinds.classify.data import check_data

        return check_data(recipe)

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        from llmpath.splits import write_checked

        return write_checked(run_id, self.check_data(recipe), columns=["text", "label"])

    def data_key(self, recipe) -> dict:
        return {"labels": recipe.data.labels}

    def objective(self, recipe):
        from llmpath.kinds.classify.objective import ClassifyObjective

        return ClassifyObjective()

    def train_key(self, recipe) -> dict:
        return {"labels": recipe.data.labels}

    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        """The base model with the same seeded head that training starts from; the candidate as merged."""
        from llmpath.kinds.classify.evaluate import score

        return score(recipe, data, run_id, name, model_dir, seed=recipe.train.seed if base else None)

    def eval_key(self, recipe) -> dict:
        return {"labels": recipe.data.labels}

    def compare(self, recipe, base: Evaluation, candidate: Evaluation, run_id: str) -> None:
        return None


KIND = Classify()
