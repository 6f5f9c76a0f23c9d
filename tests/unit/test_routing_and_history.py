"""Pure logic of routing, alias history replay and cache keys."""

from __future__ import annotations

import pytest

from tasks.aliases import Move, rollback_target, stack
from tasks.runner import choose_route

pytestmark = pytest.mark.unit


def route(**kw):
    args = dict(
        hardware="gpu-preferred",
        pool="gpu-pool",
        under_deployment=True,
        current_pool="cpu-pool",
        pool_problem=None,
        local_gpu=False,
    )
    return choose_route(**(args | kw))


def test_stage_goes_to_its_pool_when_a_worker_is_live():
    r = route()
    assert r.where == "gpu-pool" and not r.fallback


def test_no_live_worker_falls_back_to_cpu_and_says_why():
    r = route(pool_problem="work pool 'gpu-pool' has no online worker")
    assert r.where == "here" and r.fallback
    assert r.reason == "fell back to CPU in this flow: work pool 'gpu-pool' has no online worker"
    assert "GPU" in route(pool_problem="x", local_gpu=True).reason


def test_gpu_required_without_any_gpu_fails():
    with pytest.raises(RuntimeError, match="needs a GPU"):
        route(hardware="gpu-required", pool_problem="no worker")


def test_unrouted_local_and_same_pool_run_here_without_fallback():
    assert route(pool=None).where == "here"
    local = route(under_deployment=False)
    assert local.where == "here" and not local.fallback and "not under a deployment" in local.reason
    assert route(current_pool="gpu-pool").where == "here"


def move(action, frm, to):
    return Move("m", "champion", action, frm, to, "me", "", "", 0, {})


def test_rollback_walks_back_through_pushes_and_pops():
    moves = [move("gate", None, "1"), move("gate", "1", "2"), move("promote", "2", "4")]
    assert stack(moves) == ["1", "2", "4"]
    assert rollback_target(moves, "4") == "2"
    moves.append(move("rollback", "4", "2"))
    assert rollback_target(moves, "2") == "1"  # not back to 4: a rollback pops, it does not toggle
    moves.append(move("rollback", "2", "1"))
    with pytest.raises(LookupError, match="first recorded champion"):
        rollback_target(moves, "1")


def test_rollback_refuses_when_the_alias_moved_outside_llmpath():
    with pytest.raises(LookupError, match="moved outside llmpath"):
        rollback_target([move("gate", None, "1"), move("gate", "1", "2")], "7")
    with pytest.raises(LookupError, match="nothing to roll back"):
        rollback_target([], "1")


def test_cache_key_changes_with_content_code_and_store(monkeypatch, tmp_path):
    from tasks.stages import content_key

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a.db")
    key = content_key("finetune", {"lr": 1e-3}, "code1")
    assert key == content_key("finetune", {"lr": 1e-3}, "code1")
    assert key != content_key("finetune", {"lr": 2e-3}, "code1")
    assert key != content_key("finetune", {"lr": 1e-3}, "code2")
    assert key != content_key("evaluate", {"lr": 1e-3}, "code1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///b.db")  # references point into another store
    assert key != content_key("finetune", {"lr": 1e-3}, "code1")


def test_train_key_ignores_logging_cadence_but_not_learning_rate():
    from llmpath.recipes import parse_recipe
    from llmpath.results import PreparedData
    from tasks.train import train_key

    raw = {
        "name": "r",
        "registered_model": "m",
        "data": {"train": "t", "labels": ["a", "b"]},
        "model": {"base": "x"},
    }
    data = PreparedData(run_id="r", uri="runs:/r/data", fingerprint="f", rows={}, base_revision="b")
    key = train_key(parse_recipe(raw), data)
    assert key == train_key(parse_recipe(raw | {"train": {"log_every": 3, "checkpoint_every": 7}}), data)
    assert key != train_key(parse_recipe(raw | {"train": {"learning_rate": 0.1}}), data)


def test_remote_stage_inputs_are_validated_against_the_stage_signature():
    from flows.stage import typed_inputs
    from llmpath.results import PreparedData

    data = {
        "run_id": "r",
        "uri": "runs:/r/data",
        "fingerprint": "f",
        "rows": {"train": 3},
        "base_revision": "b",
    }
    typed = typed_inputs("finetune", {"data": data, "run_id": "abc"})
    assert (
        isinstance(typed["data"], PreparedData)
        and typed["data"].rows == {"train": 3}
        and typed["run_id"] == "abc"
    )
    with pytest.raises(ValueError, match="takes no inputs named \\['path'\\]"):
        typed_inputs("finetune", {"path": "/tmp/x"})
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        typed_inputs("train", {})
    with pytest.raises(ValueError):  # pydantic: a field missing from the hand-over
        typed_inputs("finetune", {"data": {"run_id": "r"}})
