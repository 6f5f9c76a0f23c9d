"""The span (extractive QA) family: a question-answering encoder exported to ONNX fp32 (+ int8), parity of
the answer spans against PyTorch's, and the `/answer` Bento (bentos/qa). Its reader also answers for rag
(`ask.reader: registry:NAME`)."""

from __future__ import annotations

from bentos.qa.qa_config import QaServe
from llmpath.protocol import BentoSpec, Family


class Span(Family):
    name = "span"
    module = __name__
    bento = BentoSpec(
        folder="qa",
        files=("service.py", "runtime.py"),
        service_class="Reader",
        config=QaServe,
        routes="POST /answer",
    )

    def export(self, recipe, trained, run_id):
        from llmpath.families.span.export import export_version

        return export_version(recipe, trained, run_id)

    def export_key(self, recipe) -> dict:
        return {
            "export": recipe.export.model_dump(exclude={"max_f1_drop", "min_agreement"}),
            "max_length": recipe.model.max_length,
        }

    def parity(self, recipe, data, exported, candidate, run_id):
        from llmpath.families.span.export import check_parity

        return check_parity(recipe, data, exported, candidate, run_id)

    def parity_key(self, recipe) -> dict:
        return {
            "export": recipe.export.model_dump(),
            "max_length": recipe.model.max_length,
            "reading": {"stride": recipe.serve.stride, "max_answer_tokens": recipe.serve.max_answer_tokens},
        }


FAMILY = Span()
