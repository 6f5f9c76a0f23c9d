"""Concurrent writers on one store: four pipelines started at once (`llmpath run` processes, one MLflow SQLite
store, one Prefect API), and a run that must not take over the checkpoint of a run still training."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from llmpath import tracking
from tests.reliability.pipelines import consistent, finish, run_env, start, stop, write_recipe

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_four_pipelines_at_once_finish_with_unique_versions_and_a_consistent_history(
    prefect_harness, home, tmp_path, tiny_bert
):
    import bentoml
    import mlflow

    from tasks import aliases

    recipe = write_recipe(tmp_path, tiny_bert, "race")
    env = run_env(home, tmp_path)
    logs = [tmp_path / f"run-{i}.log" for i in range(4)]
    # The same recipe, four seeds: four different models racing to create the experiment, the registered
    # model, their versions and the champion.
    procs = [start(recipe, env, log, f"train.seed={i}") for i, log in enumerate(logs)]
    try:
        outputs = [finish(proc, log) for proc, log in zip(procs, logs, strict=True)]
    finally:  # one failed: stop the others before the Prefect API they use goes away
        stop(procs)
    assert not any("Traceback" in out for out in outputs)

    tracking.configure()
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    versions = sorted(r.data.tags["model_version"] for r in runs)
    assert versions == ["1", "2", "3", "4"]  # unique: nobody's registration was lost or doubled
    assert len(client.search_model_versions("name='race-classifier'")) == 4

    # Every move starts where the previous one ended; the champion is the last move's, is deployable and
    # has its Bento; each run that says it promoted made exactly one of the moves.
    moves = aliases.history("race-classifier")
    assert moves and moves[0].from_version is None and consistent(moves)
    champion = client.get_model_version_by_alias("race-classifier", "champion")
    assert str(champion.version) == moves[-1].to_version
    assert champion.tags["deployable.form"] in {"int8", "fp32"}
    assert bentoml.get(champion.tags["bento.tag"]).info.labels["version"] == str(champion.version)
    decisions = [r.data.tags["promotion.decision"] for r in runs]
    assert set(decisions) <= {"promoted", "kept"}
    assert decisions.count("promoted") == len([m for m in moves if m.action == "gate"])
    assert "llmpath.lock" not in client.get_registered_model("race-classifier").tags


def test_a_checkpoint_is_taken_over_only_once_its_run_is_dead(home):
    import mlflow

    from llmpath import checkpoints

    tracking.configure()
    client = mlflow.MlflowClient()
    experiment = tracking.ensure_experiment("ckpt")
    trainer = subprocess.Popen(["sleep", "300"])  # stands in for a process that is still training
    try:
        owner = client.create_run(experiment).info.run_id  # RUNNING, as a training run is
        for tag, value in {
            checkpoints.KEY_TAG: "k",
            checkpoints.STEP_TAG: "20",
            checkpoints.HOST_TAG: socket.gethostname(),
            checkpoints.PID_TAG: str(trainer.pid),
        }.items():
            client.set_tag(owner, tag, value)
        newcomer = client.create_run(experiment).info.run_id
        assert checkpoints.find("k", newcomer) is None  # alive: start fresh, do not steal it
    finally:
        trainer.kill()
        trainer.wait()
    found = checkpoints.find("k", newcomer)  # its process is gone: take it over
    assert found is not None and found.run_id == owner and found.step == 20

    # On another host only the heartbeat tells: fresh means alive, old means dead.
    client.set_tag(owner, checkpoints.HOST_TAG, "another-host")
    client.set_tag(owner, checkpoints.HEARTBEAT_TAG, "0")
    assert checkpoints.find("k", newcomer) is not None
    client.set_tag(owner, checkpoints.HEARTBEAT_TAG, f"{time.time():.0f}")
    assert checkpoints.find("k", newcomer) is None
    client.set_terminated(owner, "FAILED")  # an ended run's checkpoint is no one's
    assert checkpoints.find("k", newcomer) is not None


def test_a_writer_on_another_host_holds_the_model_until_its_lease_expires(home, monkeypatch, capsys):
    """The lease tag is what serializes hosts sharing a tracking server: a writer waits for a live lease,
    gives up with the holder's name when told to wait less, and takes an expired one over."""
    import json

    import mlflow

    from llmpath import locks
    from tasks.registry import alias_version, move_champion

    tracking.configure()
    client = mlflow.MlflowClient()
    run = client.create_run(tracking.ensure_experiment("lease"))
    client.create_registered_model("lease-model")
    for _ in range(2):
        client.create_model_version("lease-model", f"runs:/{run.info.run_id}/m", run_id=run.info.run_id)

    def held_elsewhere(seconds: float) -> None:
        lease = {"owner": "gpu-box:4242:abcd", "host": "gpu-box", "pid": 4242, "what": "promote v1"}
        client.set_registered_model_tag(
            "lease-model", locks.LOCK_TAG, json.dumps(lease | {"expires": time.time() + seconds})
        )

    held_elsewhere(3600)
    monkeypatch.setattr(locks, "WAIT", 2.0)
    with pytest.raises(locks.RegistryBusy, match=r"held by gpu-box:4242:abcd \(promote v1"):
        move_champion("lease-model", "1", "by hand", force=True)
    assert alias_version("lease-model", "champion") is None  # nothing moved without the lock

    held_elsewhere(4)  # expires while this writer waits
    monkeypatch.setattr(locks, "WAIT", 120.0)
    started = time.monotonic()
    capsys.readouterr()
    move_champion("lease-model", "2", "by hand", force=True)
    assert time.monotonic() - started >= 3.0 and alias_version("lease-model", "champion") == "2"
    assert "waiting for the registry lock held by gpu-box:4242:abcd" in capsys.readouterr().out
    assert locks.LOCK_TAG not in client.get_registered_model("lease-model").tags
