"""The sequence-classifier family: ONNX fp32 + int8 export, parity against PyTorch's predictions, and the
batched `/classify` Bento (bentos/classifier)."""

from __future__ import annotations

from bentos.classifier.classifier_config import ClassifierServe
from llmpath.protocol import BentoSpec, Family


class Classifier(Family):
    name = "sequence-classifier"
    module = __name__
    bento = BentoSpec(
        folder="classifier",
        files=("service.py", "runtime.py"),
        service_class="Classifier",
        config=ClassifierServe,
        routes="POST /classify",
    )

    def export(self, recipe, trained, run_id):
        from llmpath.families.classifier.export import export_version

        return export_version(recipe, trained, run_id)

    def export_key(self, recipe) -> dict:
        return {"export": recipe.export.model_dump(exclude={"max_accuracy_drop", "min_agreement"})}

    def parity(self, recipe, data, exported, candidate, run_id):
        from llmpath.families.classifier.export import check_parity

        return check_parity(recipe, data, exported, candidate, run_id)

    def parity_key(self, recipe) -> dict:
        return {
            "export": recipe.export.model_dump(),
            "labels": recipe.data.labels,
            "max_length": recipe.model.max_length,
            "batch_size": recipe.eval.batch_size,
        }


FAMILY = Classifier()
