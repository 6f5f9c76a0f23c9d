"""The `rag` flow: index a corpus in Milvus, gate the index on retrieval quality, measure answers with the chat
model, and package a Bento that searches and answers."""

from __future__ import annotations

from prefect import flow

from flows.recipe import expect_kind
from llmpath.kinds.rag.recipe import RagRecipe
from tasks import flowrun
from tasks.package import package
from tasks.rag import answer_questions, embed_corpus, evaluate_index, gate, index, prepare_corpus, register
from tasks.registry import promote
from tasks.runner import StageRunner, validate_routing
from tasks.runs import pipeline_run


@flow(name="rag", log_prints=True, flow_run_name=flowrun.run_name)
def rag(recipe: RagRecipe) -> dict:
    """Retrieval: prepare_corpus (SQuAD / Markdown folder / JSONL -> chunks) -> embed (all-MiniLM-L6-v2,
    PyTorch or checked ONNX) -> index (a new Milvus collection per build, content-hash upserts) ->
    evaluate_retrieval (recall@k and MRR, Milvus vs exact search) -> register_index -> gate_index
    (recall@5 >= floor and >= champion) -> evaluate_answers (chat model with and without retrieval) ->
    package -> promote (`champion` moves last, if nobody moved it meanwhile)."""
    expect_kind(recipe, "rag")
    flowrun.begin(recipe)
    validate_routing(recipe)
    with pipeline_run(recipe) as run:
        stage = StageRunner(recipe, run.run_id)
        corpus = stage(prepare_corpus, recipe)
        embedded = stage(embed_corpus, recipe, corpus)
        built = stage(index, recipe, corpus, embedded)
        retrieval = stage(evaluate_index, recipe, corpus, embedded, built)
        run.registration = stage(register, recipe, built, retrieval)
        gated = stage(gate, recipe, run.registration, retrieval)
        answers = stage(answer_questions, recipe, corpus, built, embedded)
        bento = stage(package, recipe, gated.target) if gated.target else None
        run.promotion = stage(promote, gated)
        run.summary = {
            "mlflow run": run.run_id,
            "model version": f"{run.registration.name} v{run.registration.version}",
            "index collection": built.collection,
            "chunks": built.rows,
            "champion": run.promotion.champion_version or "none",
            "promotion": run.promotion.reason,
        } | {
            f"retrieval {k}": retrieval.metrics[k]
            for k in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr")
        }
        run.summary |= (
            {
                "exact recall_at_5": retrieval.metrics["exact.recall_at_5"],
                "recall ratio at 10": retrieval.metrics["recall_ratio_at_10"],
            }
            | answers
            | {"bento": bento.tag if bento else "not built (no champion)"}
            | stage.summary()
        )
    return run.summary
