"""The rag kind: a corpus cut into chunks, embedded into a Milvus collection (the index family), gated on
recall@5 of the gold paragraph, answered by a chat model with and without retrieval. It trains nothing: its
flow (flows/rag.py) runs stages of its own (tasks/rag.py) that call the functions here.

Modules: `corpus` reads the sources, `chunking` cuts them, `prepare` checks and logs the prepared corpus,
`retrieval` and `answers` evaluate; embedding, building and packaging the index are the family's."""

from __future__ import annotations

from llmpath.families.index import FAMILY
from llmpath.kinds.rag.recipe import RagRecipe
from llmpath.protocol import CheckedData, Kind
from llmpath.results import Embeddings, IndexBuild, PreparedCorpus


class Rag(Kind):
    name = "rag"
    smoke_recipe = "rag-squad-smoke.yaml"
    module = __name__
    recipe = RagRecipe
    family = FAMILY
    summary = (
        "retrieval over a corpus (SQuAD, Markdown, JSONL) in Milvus: recall@5 gate, /search and /ask Bento"
    )

    def check_inputs(self, recipe) -> None:
        """Every source reads with few enough bad rows, has text long enough to chunk and questions to gate on."""
        from llmpath.kinds.rag.corpus import read_corpus, require_questions

        require_questions(read_corpus(recipe.corpus), recipe.corpus)

    def check_data(self, recipe) -> CheckedData:
        """The corpus read and chunked with the embedder's tokenizer (no embedding): `llmpath validate`."""
        from llmpath.kinds.rag.prepare import check_corpus

        checked = check_corpus(recipe)
        return CheckedData(
            splits={},
            reports=[],  # the corpus's skipped rows are `issues`
            report=checked.report,
            markdown=checked.markdown,
            base=checked.base,
            issues=checked.corpus.issues,
            subject="Corpus",
        )

    def prepare(self, recipe, run_id: str) -> tuple[PreparedCorpus, str]:
        from llmpath.kinds.rag.prepare import prepare

        return prepare(recipe, run_id)

    def data_key(self, recipe) -> dict:
        from llmpath.kinds.rag.prepare import prepare_key

        return prepare_key(recipe)

    def build_index(self, recipe, prepared: PreparedCorpus, embedded: Embeddings, run_id: str) -> IndexBuild:
        """The family's build, with this kind's chunking recorded in the collection's build record."""
        from llmpath.families.index.build import build_index
        from llmpath.kinds.rag.chunking import chunking_settings

        return build_index(recipe, prepared, embedded, run_id, chunking_settings(recipe.corpus))

    def evaluate_retrieval(self, recipe, prepared, embedded, built, run_id: str):
        from llmpath.kinds.rag.retrieval import evaluate_retrieval

        return evaluate_retrieval(recipe, prepared, embedded, built, run_id)

    def evaluate_answers(self, recipe, prepared, built, embedded, run_id: str) -> dict[str, float]:
        from llmpath.kinds.rag.answers import evaluate_answers

        return evaluate_answers(recipe, prepared, built, embedded, run_id)


KIND = Rag()
