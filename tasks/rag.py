"""The rag kind's stages: corpus -> chunks -> embeddings -> a Milvus collection -> retrieval evaluation (index
and exact search side by side) -> registry version and the `champion` gate on recall@5 -> answers from the
chat model with and without retrieval -> the rag Bento (packaged by `tasks.package`) -> `champion` moves last.

Each stage is a Prefect shell (cache key, retries, hardware) around the rag kind (`llmpath.kinds.rag`) and the
index family (`llmpath.families.index`). Stages hand over MLflow references; the only live state is the Milvus
collection, which every writer reaches through upserts of content-hashed chunks, so running a stage again never
duplicates a row.
"""

from __future__ import annotations

from llmpath import tracking
from llmpath.families.index import build, embed
from llmpath.kinds.rag import KIND
from llmpath.links import artifact_key
from llmpath.locks import registry_lock
from llmpath.promotion import decide_floor
from llmpath.recipes import Recipe
from llmpath.results import Embeddings, Evaluation, GateDecision, IndexBuild, PreparedCorpus, Registration
from tasks.publish import publish_markdown
from tasks.registry import _client, champion_of, kept_as_champion, record_decision, register_version
from tasks.stages import kind_version, stage


def prepare(recipe: Recipe, run_id: str) -> PreparedCorpus:
    """Check the corpus and log its chunks, questions and report to the run."""
    prepared, markdown = KIND.prepare(recipe, run_id)
    publish_markdown(artifact_key(recipe.name, "corpus-report"), markdown, f"Corpus report for {recipe.name}")
    print(markdown)
    return prepared


def prepare_key(recipe: Recipe, **_) -> dict:
    return KIND.data_key(recipe)


def embed_chunks(recipe: Recipe, prepared: PreparedCorpus, run_id: str) -> Embeddings:
    """Embed every chunk and question (with `index.onnx`: through the ONNX export, checked first)."""
    return embed.embed(recipe, prepared, run_id)


def embed_key(recipe: Recipe, prepared: PreparedCorpus, **_) -> dict:
    return embed.embed_key(recipe, prepared)


def build_index(recipe: Recipe, prepared: PreparedCorpus, embedded: Embeddings, run_id: str) -> IndexBuild:
    """Write the chunks into this build's collection. Always runs: the collection is live state."""
    return KIND.build_index(recipe, prepared, embedded, run_id)


def evaluate_retrieval(
    recipe: Recipe, prepared: PreparedCorpus, embedded: Embeddings, built: IndexBuild, run_id: str
) -> Evaluation:
    """recall@1/5/10 and MRR through the index and by exact search."""
    return KIND.evaluate_retrieval(recipe, prepared, embedded, built, run_id)


def register_index(recipe: Recipe, built: IndexBuild, evaluation: Evaluation, run_id: str) -> Registration:
    """A registry version per collection: its source is the run's `index/manifest.json` folder, its tags
    name the collection and its build record. The same collection keeps its version."""
    import mlflow

    name = recipe.registered_model
    with tracking.use_run(run_id):
        mlflow.log_dict(build.manifest(recipe, built), "index/manifest.json")
    source = tracking.artifact_uri(run_id, "index")
    evals = build.eval_tags(evaluation)
    tags = build.version_tags(recipe, built, evals, run_id, source)
    description = f"Milvus collections of the rag recipe {recipe.name}"
    # Under the registry lock: two runs of one build never register its collection twice.
    with registry_lock(name, "register_index", create=True, description=description):
        registration = register_version(
            name,
            build.registry_key(built),
            evals,
            lambda: str(_client().create_model_version(name, source, run_id=run_id, tags=tags).version),
        )
    with tracking.use_run(run_id):
        mlflow.set_tags({"registered_model": name, "model_version": registration.version})
    return registration


def gate_index(
    recipe: Recipe, registration: Registration, evaluation: Evaluation, run_id: str
) -> GateDecision:
    """Approve this collection for `champion` only when recall@5 reaches `eval.floor` and is not below the
    current champion's (it moves at the end of the run, stage `promote`)."""
    metric = recipe.eval.metric
    champion_version, champion_score = champion_of(registration.name, metric)
    if champion_version == registration.version:
        return kept_as_champion(registration.name, champion_version)
    decision = decide_floor(
        metric, evaluation.metrics[metric], recipe.eval.floor, champion_score, champion_version
    )
    return record_decision(registration, champion_version, decision, run_id)


def evaluate_answers(
    recipe: Recipe, prepared: PreparedCorpus, built: IndexBuild, embedded: Embeddings, run_id: str
) -> dict[str, float]:
    """EM and token F1 of the chat model's answers with the top passages and closed-book."""
    return KIND.evaluate_answers(recipe, prepared, built, embedded, run_id)


# Cached stages carry the code version of the rag kind and the index family (`kind_version`): editing another
# kind never invalidates them.
prepare_corpus = stage(prepare, name="prepare_corpus", key=prepare_key, version=kind_version)
embed_corpus = stage(
    embed_chunks, name="embed", key=embed_key, hardware="gpu-preferred", version=kind_version
)
index = stage(build_index, name="index")  # live state: always runs, idempotent
evaluate_index = stage(evaluate_retrieval, name="evaluate_retrieval")
register = stage(register_index, name="register_index")
gate = stage(gate_index, name="gate_index")
answer_questions = stage(evaluate_answers, name="evaluate_answers", retries=0)
