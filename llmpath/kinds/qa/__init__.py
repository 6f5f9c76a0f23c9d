"""The qa kind: extractive question answering, a span head fine-tuned on an encoder with SQuAD, held out by
paragraph, gated on SQuAD F1, served as ONNX behind `/answer`."""

from __future__ import annotations

from pathlib import Path

from llmpath.families.span import FAMILY
from llmpath.kinds.qa.recipe import QaRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import Evaluation, PreparedData


class Qa(Kind):
    name = "qa"
    module = __name__
    recipe = QaRecipe
    family = FAMILY
    smoke_recipe = "qa-squad-smoke.yaml"
    summary = "Extractive QA on SQuAD (span head on MiniLM): EM/F1 gate, ONNX span parity, /answer Bento"

    def check_inputs(self, recipe) -> None:
        from llmpath.kinds.qa.data import load_splits

        load_splits(recipe)  # the files read, few enough bad entries, questions on both sides

    def check_data(self, recipe) -> CheckedData:
        from llmpath.kinds.qa.data import check_data

        return check_data(recipe)

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        from llmpath.kinds.qa.data import COLUMNS
        from llmpath.splits import write_checked

        return write_checked(run_id, self.check_data(recipe), columns=COLUMNS)

    def data_files(self, recipe) -> dict[str, str]:
        from llmpath.kinds.qa.data import data_files

        return data_files(recipe)

    def objective(self, recipe):
        from llmpath.kinds.qa.objective import QaObjective

        return QaObjective()

    def train_key(self, recipe) -> dict:
        return {"stride": recipe.serve.stride}  # the training windows

    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        """The base encoder with the same seeded span head training starts from; the candidate as trained."""
        from llmpath.kinds.qa.evaluate import score

        return score(recipe, data, run_id, name, model_dir, seed=recipe.train.seed if base else None)

    def eval_key(self, recipe) -> dict:
        return {"stride": recipe.serve.stride, "max_answer_tokens": recipe.serve.max_answer_tokens}

    def compare(self, recipe, base: Evaluation, candidate: Evaluation, run_id: str) -> None:
        return None


KIND = Qa()
