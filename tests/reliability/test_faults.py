"""kill -9 during packaging, registration, training and ingest (`llmpath run` processes stopped at a failpoint,
then SIGKILLed), then the same run again: it completes, nothing is duplicated (rows, versions, collections), and
the champion is never lost and always has a deployable form and a Bento."""

from __future__ import annotations

import json

import pytest
import yaml

from llmpath import tracking
from tests.integration import test_rag_flow
from tests.reliability.pipelines import consistent, finish, kill_at, run_env, start, write_recipe

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
MODEL = "fault-classifier"
chat_model = test_rag_flow.chat_model  # the tiny random Llama answering the rag questions


def bentos_of(version: str, bento: str = "fault-bento") -> list[str]:
    import bentoml

    return [str(b.tag) for b in bentoml.list(bento) if b.info.labels.get("version") == version]


def versions_of(client, model: str) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name='{model}'")}


def champion_is_servable(client, model: str = MODEL, forms: frozenset = frozenset({"int8", "fp32"})) -> str:
    """The champion's version, after checking it has a deployable form and its Bento exists."""
    import bentoml

    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.tags["deployable.form"] in forms and champion.tags["deployable.uri"]
    assert bentoml.get(champion.tags["bento.tag"]).info.labels["version"] == str(champion.version)
    return str(champion.version)


def test_runs_killed_in_packaging_and_in_registration_recover_on_the_next_run(
    prefect_harness, home, tmp_path, tiny_bert
):
    import mlflow

    from tasks import aliases

    recipe = write_recipe(tmp_path, tiny_bert, "fault")
    tracking.configure()
    client = mlflow.MlflowClient()

    # 1. The first run is killed while packaging: its Bento is built but not yet named on the version. The
    # champion never moved (it moves last), so nothing points at a half-released model.
    log = tmp_path / "package-killed.log"
    kill_at(
        start(recipe, run_env(home, tmp_path, LLMPATH_FAILPOINT="package"), log),
        log,
        "failpoint package: reached",
    )
    assert client.get_registered_model(MODEL).aliases.get("champion") is None
    assert client.get_model_version(MODEL, "1").tags["deployable.form"] in {"int8", "fp32"}
    assert len(bentos_of("1")) == 1 and "bento.tag" not in client.get_model_version(MODEL, "1").tags

    # 2. Run again: the cached model keeps its version, the Bento is reused, and only then champion moves.
    log = tmp_path / "rerun-1.log"
    finish(start(recipe, run_env(home, tmp_path), log), log)
    assert champion_is_servable(client) == "1"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1 and len(bentos_of("1")) == 1

    # 3. Another model (another seed) is killed inside registration: its version exists, the registry
    # lock is held by a dead process, and the champion is untouched and still servable.
    log = tmp_path / "register-killed.log"
    env = run_env(home, tmp_path, LLMPATH_FAILPOINT="register")
    kill_at(start(recipe, env, log, "train.seed=7"), log, "failpoint register: reached")
    lease = json.loads(client.get_registered_model(MODEL).tags["llmpath.lock"])
    assert lease["what"] == "register" and lease["pid"] != 0
    assert {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")} == {"1", "2"}
    assert champion_is_servable(client) == "1"

    # 4. Run it again: the stale lock is taken over at once (its holder is dead), the version is found
    # again, not registered twice, and the run completes; whatever the gate decides, the champion is servable.
    log = tmp_path / "rerun-2.log"
    out = finish(start(recipe, run_env(home, tmp_path), log, "train.seed=7"), log)
    assert "already holds this model: not registered again" in out
    assert {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")} == {"1", "2"}
    champion_is_servable(client)
    assert "llmpath.lock" not in client.get_registered_model(MODEL).tags
    assert all(len(bentos_of(v)) <= 1 for v in ("1", "2"))
    moves = aliases.history(MODEL)
    assert moves[0].from_version is None and consistent(moves)
    killed = client.search_runs(
        [client.get_experiment_by_name("fault").experiment_id], "attributes.status = 'RUNNING'"
    )
    assert len(killed) == 2  # the two killed runs never closed; their leftovers are `llmpath gc`'s


def test_a_run_killed_while_training_resumes_from_its_checkpoint(prefect_harness, home, tmp_path, tiny_bert):
    import mlflow

    from tasks import aliases

    model, bento = "fault-train-classifier", "fault-train-bento"
    recipe = write_recipe(tmp_path, tiny_bert, "fault-train", checkpoint_every=10)  # 60 steps
    tracking.configure()
    client = mlflow.MlflowClient()

    # 1. A champion to protect.
    log = tmp_path / "first.log"
    finish(start(recipe, run_env(home, tmp_path), log), log)
    assert champion_is_servable(client, model) == "1" and versions_of(client, model) == {"1"}
    experiment = client.get_experiment_by_name("fault-train").experiment_id

    # 2. Another seed is killed in the middle of finetune, right after its first checkpoint (step 10 of 60):
    # nothing registered, the champion untouched and still servable.
    log = tmp_path / "train-killed.log"
    env = run_env(home, tmp_path, LLMPATH_FAILPOINT="checkpoint")
    kill_at(start(recipe, env, log, "train.seed=7"), log, "failpoint checkpoint: reached")
    (killed,) = client.search_runs([experiment], "attributes.status = 'RUNNING'")
    assert killed.data.tags["llmpath.checkpoint_step"] == "10"
    assert versions_of(client, model) == {"1"} and champion_is_servable(client, model) == "1"

    # 3. The same run again takes the dead run's checkpoint over, trains steps 11-60 only, registers exactly
    # one new version and promotes it (seed 7 scores 0.96 here, v1 0.81), after its Bento exists.
    log = tmp_path / "train-rerun.log"
    out = finish(start(recipe, run_env(home, tmp_path), log, "train.seed=7"), log)
    assert f"resuming finetune from step 10/60 (checkpoint of run {killed.info.run_id})" in out
    assert versions_of(client, model) == {"1", "2"}
    resumed = client.get_model_version(model, "2").run_id
    assert client.get_run(resumed).data.metrics["train.resumed_from_step"] == 10
    assert sorted(m.step for m in client.get_metric_history(resumed, "train_loss")) == list(range(1, 61))
    assert champion_is_servable(client, model) == "2"
    assert len(bentos_of("1", bento)) == len(bentos_of("2", bento)) == 1
    assert [(m.from_version, m.to_version) for m in aliases.history(model)] == [(None, "1"), ("1", "2")]


def test_a_run_killed_while_ingesting_completes_without_duplicates(
    prefect_harness, home, tmp_path, chat_model, monkeypatch
):
    import mlflow

    from llmpath.families.index import vectors
    from tasks import aliases

    model, bento = "fault-rag-index", "fault-rag-bento"
    monkeypatch.delenv("LLMPATH_MILVUS_URI", raising=False)  # the Lite file under `home`
    test_rag_flow.write_corpus(tmp_path)
    raw = {
        "name": "fault-rag",
        "kind": "rag",
        "registered_model": model,
        "corpus": {"sources": [{"path": "squad_tiny.json"}, {"path": "notes"}], "chunking": "paragraph"},
        "index": {"type": "FLAT", "write_batch_size": 2},  # several upserts even for a tiny corpus
        "ask": {"chat_model": str(chat_model), "k": 2, "sample": 3, "max_new_tokens": 6},
        "serve": {"bento_name": bento},
    }
    recipe = tmp_path / "fault-rag.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    tracking.configure()
    client = mlflow.MlflowClient()
    servable = frozenset({"milvus-lite"})

    def collections() -> dict[str, int]:
        """Every collection of the Lite file and its rows, read between runs (none is alive to hold the file),
        then the file is let go: closing a client leaves this process's embedded server holding it."""
        from milvus_lite.server_manager import server_manager_instance

        uri = str(home / "milvus" / "llmpath.db")
        try:
            with vectors.connect(uri) as milvus:
                return {name: vectors.count(milvus, name) for name in milvus.list_collections()}
        finally:
            server_manager_instance.release_server(uri)

    # 1. A champion to protect.
    log = tmp_path / "first.log"
    finish(start(recipe, run_env(home, tmp_path), log), log)
    assert champion_is_servable(client, model, servable) == "1" and versions_of(client, model) == {"1"}
    first = client.get_model_version(model, "1").tags
    chunks = int(first["rows"])
    assert collections() == {first["collection"]: chunks}

    # 2. The corpus gains a document (a new build, so a new collection); the run is killed after its first
    # batch of upserts: two rows are in the new collection, nothing is registered, the champion is untouched.
    (tmp_path / "notes" / "bridges.md").write_text(
        "# Bridges\n\nThe Golden Gate Bridge spans the strait at the entrance to San Francisco Bay."
    )
    log = tmp_path / "ingest-killed.log"
    env = run_env(home, tmp_path, LLMPATH_FAILPOINT="ingest")
    kill_at(start(recipe, env, log), log, "failpoint ingest: reached")
    rows = collections()
    (partial,) = set(rows) - {first["collection"]}
    assert rows == {first["collection"]: chunks, partial: 2}
    assert versions_of(client, model) == {"1"} and champion_is_servable(client, model, servable) == "1"

    # 3. The same run again writes into the same collection: every chunk once, no third collection, one
    # new version, and champion moves to it only after its Bento exists.
    log = tmp_path / "ingest-rerun.log"
    out = finish(start(recipe, run_env(home, tmp_path), log), log)
    assert f"updated collection {partial}" in out
    assert collections() == {first["collection"]: chunks, partial: chunks + 1}
    assert versions_of(client, model) == {"1", "2"}
    second = client.get_model_version(model, "2").tags
    assert second["collection"] == partial and second["rows"] == str(chunks + 1)
    assert champion_is_servable(client, model, servable) == "2"
    assert len(bentos_of("1", bento)) == len(bentos_of("2", bento)) == 1
    assert [(m.from_version, m.to_version) for m in aliases.history(model)] == [(None, "1"), ("1", "2")]
