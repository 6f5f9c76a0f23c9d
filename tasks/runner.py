"""Runs the stages of one pipeline: in this process or on another work pool, cached or not, and records how.

A flow calls `run(stage, *args)` for each stage. The runner adds the pipeline's MLflow run id, looks up the
recipe's routing for the stage, and either calls the Prefect task here (its cache policy decides whether it
computes) or, when the flow runs under a deployment and the stage's pool has a live worker, runs the stage as a
sub-deployment there (`run_deployment`, persisted result). When the pool has no live worker, a stage that only
prefers a GPU runs here on CPU; the flow log and the MLflow run say so and why.

`plain=True` calls the stage functions directly, without Prefect: the orchestration benchmark compares the two.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass
from typing import Any

from prefect import Task

from llmpath.recipes import Recipe
from tasks import describe
from tasks.stages import STAGES, hardware_of

STAGE_FLOW = "llmpath-stage"  # deployments `llmpath-stage/<pool>` run any stage on that pool (flows/stage.py)


@dataclass(frozen=True)
class Route:
    where: str  # "here" or a pool name
    reason: str
    fallback: bool = False


def choose_route(
    hardware: str,
    pool: str | None,
    under_deployment: bool,
    current_pool: str | None,
    pool_problem: str | None,
    local_gpu: bool,
) -> Route:
    """Where a stage runs. `pool_problem` is None when the pool has a live worker and a stage deployment."""
    if pool is None:
        return Route("here", "no routing for this stage")
    if not under_deployment:
        return Route("here", f"not under a deployment: {pool} is used only when the pipeline runs from one")
    if pool == current_pool:
        return Route("here", f"this flow already runs on {pool}")
    if pool_problem is None:
        return Route(pool, f"{pool} has a live worker")
    if hardware == "gpu-required" and not local_gpu:
        raise RuntimeError(f"this stage needs a GPU: {pool_problem}, and this machine has none")
    where = "GPU" if local_gpu else "CPU"
    return Route("here", f"fell back to {where} in this flow: {pool_problem}", fallback=True)


def _root_flow_run():
    """The flow run a worker started this process for (None when run from a shell or a test)."""
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id:
        return None
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def pool_problem(pool: str) -> str | None:
    """Why `pool` cannot take a stage now, or None when it has an online worker and a stage deployment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            work_pool = client.read_work_pool(pool)
        except ObjectNotFound:
            return f"work pool {pool!r} does not exist"
        if work_pool.is_paused:
            return f"work pool {pool!r} is paused"
        workers = client.read_workers_for_work_pool(pool)
        if not any(w.status == WorkerStatus.ONLINE and _beating(w) for w in workers):
            return f"work pool {pool!r} has no online worker"
        try:
            client.read_deployment_by_name(f"{STAGE_FLOW}/{pool}")
        except ObjectNotFound:
            return f"no deployment {STAGE_FLOW}/{pool} (run `llmpath up` or `prefect deploy --all`)"
    return None


def _beating(worker) -> bool:
    """A stopped worker stays ONLINE in the API for three missed heartbeats: also ask for a recent one."""
    from datetime import UTC, datetime

    if worker.last_heartbeat_time is None:
        return False
    window = max(2 * (worker.heartbeat_interval_seconds or 30), 20)
    return (datetime.now(UTC) - worker.last_heartbeat_time).total_seconds() <= window


def _local_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass
class StageRecord:
    stage: str
    how: str  # "ran", "cached", "remote"
    where: str
    reason: str
    seconds: float
    fallback: bool = False


class StageRunner:
    """`runner(stage, *args)` runs one stage of this pipeline run (see the module docstring)."""

    def __init__(self, recipe: Recipe, run_id: str, plain: bool = False):
        self.recipe, self.run_id, self.plain = recipe, run_id, plain
        self.records: list[StageRecord] = []
        self._root = None if plain else _root_flow_run()

    def __call__(self, stage: Task, *args: Any, **kwargs: Any) -> Any:
        fn = stage.fn
        if "run_id" in inspect.signature(fn).parameters:
            kwargs["run_id"] = self.run_id
        params = inspect.signature(fn).bind(*args, **kwargs).arguments
        started = time.perf_counter()
        if self.plain:
            result = fn(**params)
            self._note(StageRecord(stage.name, "ran", "here", "plain Python", time.perf_counter() - started))
            return result
        route = self.route(stage)
        if route.where == "here":
            state = stage(**params, return_state=True)
            result = state.result()  # raises the stage's own error when it failed
            how = "cached" if state.name == "Cached" else "ran"
            if how == "cached" and not _source_exists(result):
                print(f"{stage.name}: the cached result refers to a deleted MLflow run: computing it again")
                result = stage.with_options(refresh_cache=True)(**params)
                how = "ran"
        else:
            result = self._remote(stage.name, route.where, params)
            how = "remote"
        seconds = time.perf_counter() - started
        self._note(StageRecord(stage.name, how, route.where, route.reason, seconds, route.fallback), result)
        return result

    def route(self, stage: Task) -> Route:
        pool = self.recipe.routing.pools.get(stage.name)
        under = self._root is not None and self._root.deployment_id is not None
        current = self._root.work_pool_name if self._root is not None else None
        problem = pool_problem(pool) if pool and under and pool != current else None
        hardware = hardware_of(stage)
        gpu = _local_gpu() if hardware != "cpu" and problem else False
        return choose_route(hardware, pool, under, current, problem, gpu)

    def _remote(self, name: str, pool: str, params: dict[str, Any]) -> Any:
        from prefect.deployments import run_deployment

        inputs = {k: v for k, v in params.items() if k != "recipe"}
        print(f"{name}: sending to {pool} ({STAGE_FLOW}/{pool})")
        flow_run = run_deployment(
            f"{STAGE_FLOW}/{pool}",
            parameters={"stage": name, "recipe": self.recipe, "inputs": inputs},
            flow_run_name=f"{self.recipe.name}-{name}",
            poll_interval=2,
        )
        if not flow_run.state.is_completed():
            raise RuntimeError(
                f"{name} on {pool} ended {flow_run.state.name}: see Prefect flow run {flow_run.name}"
            )
        return flow_run.state.result()

    def _note(self, record: StageRecord, result: Any = None) -> None:
        """Say how the stage ran, in the flow log and on the MLflow run; a cached result's metrics are copied."""
        import mlflow

        self.records.append(record)
        if record.how == "cached":
            text = f"cached: reused the result of an identical earlier call ({_source(result)})"
        elif record.how == "remote":
            text = f"ran on {record.where} ({record.reason})"
        else:
            text = f"ran here ({record.reason})"
        print(f"stage {record.stage}: {text} in {record.seconds:.1f}s")
        if self.plain:
            return
        client = mlflow.MlflowClient()
        client.set_tag(self.run_id, f"stage.{record.stage}", text[:5000])
        if record.fallback:
            client.set_tag(self.run_id, f"routing.{record.stage}.fallback", record.reason)
        if record.how == "cached" and hasattr(result, "metrics_to_copy"):
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            copied = [Metric(key, value, now, 0) for key, value in result.metrics_to_copy().items()]
            client.log_batch(self.run_id, metrics=copied)
        if record.how == "cached":
            describe.note_reuse(self.run_id, self.recipe, record.stage, result)  # source run, model, datasets

    def summary(self) -> dict[str, str]:
        return {f"stage {r.stage}": f"{r.how} ({r.where}, {r.seconds:.1f}s)" for r in self.records}


def _source_exists(result: Any) -> bool:
    """A cached result is only as good as the MLflow run holding its artifacts (a user may have deleted it)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    for run_id in getattr(result, "source_runs", set)():
        try:
            if client.get_run(run_id).info.lifecycle_stage != "active":
                return False
        except MlflowException:
            return False
    return True


def _source(result: Any) -> str:
    runs = sorted(getattr(result, "source_runs", set)())
    return f"MLflow run {', '.join(runs)}" if runs else "no artifacts"


def validate_routing(recipe: Recipe) -> None:
    """Fail before any work when the recipe routes a stage that does not exist."""
    unknown = sorted(set(recipe.routing.pools) - set(STAGES))
    if unknown:
        raise ValueError(
            f"{recipe.name}: routing.pools names unknown stages {unknown}; known: {sorted(STAGES)}"
        )
