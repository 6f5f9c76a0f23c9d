"""kill -9 during packaging and during registration (`llmpath run` processes stopped at a failpoint, then
SIGKILLed), then the same run again: it completes, nothing is duplicated, and the champion is never lost and
always has a deployable form and a Bento."""

from __future__ import annotations

import json

import pytest

from llmpath import tracking
from tests.reliability.pipelines import consistent, finish, kill_at, run_env, start, write_recipe

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
MODEL = "fault-classifier"


def bentos_of(version: str) -> list[str]:
    import bentoml

    return [str(b.tag) for b in bentoml.list("fault-bento") if b.info.labels.get("version") == version]


def champion_is_servable(client) -> str:
    """The champion's version, after checking it has a deployable form and its Bento exists."""
    import bentoml

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["deployable.form"] in {"int8", "fp32"} and champion.tags["deployable.uri"]
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
