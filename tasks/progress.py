"""The Prefect side of `llmpath.progress`: around every stage run (tasks/stages.py), a reporter that shows the
progress of the stage's long loop (training steps, texts embedded, questions answered, parity probes) in the
Prefect UI, where tqdm's bars on stderr never arrive:

- a progress artifact of the stage run, key `<recipe>-<stage>-progress` (one per recipe and stage, so two
  recipes never replace each other's latest), created at the first update, then updated at most every
  `ARTIFACT_SECONDS` and only when the figure moved a whole percent; 100 when the stage ends well;
- a line in the run's log at every tenth, or after `LOG_SECONDS` without one while it moves.

The cost: at most one API call per 10 s and about 100 per stage run, each 20-50 ms here through the run's own
client (the stock `update_progress_artifact` opens a client per call: 0.2 s), on the loop's thread: 0.5% of its
time at worst; the log lines go through Prefect's batched log handler. A failed Prefect call stops the artifact updates (with one warning) and never fails the stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmpath.links import artifact_key

ARTIFACT_SECONDS = 10.0
LOG_SECONDS = 60.0


@dataclass
class Throttle:
    """When a growing fraction is worth sending: the first value; the end (1.0); a new multiple of `step` once
    `min_seconds` passed since the last send; any growth once `max_seconds` passed. Clock injected for tests."""

    step: float
    min_seconds: float = 0.0
    max_seconds: float = math.inf
    clock: Callable[[], float] = time.monotonic
    sent: float | None = None
    sent_at: float = field(default=-math.inf)

    def due(self, fraction: float) -> bool:
        now = self.clock()
        last, elapsed = self.sent, now - self.sent_at
        ok = (
            last is None
            or (fraction >= 1.0 > last)
            or (self._steps(fraction) > self._steps(last) and elapsed >= self.min_seconds)
            or (fraction > last and elapsed >= self.max_seconds)
        )
        if ok:
            self.sent, self.sent_at = fraction, now
        return ok

    def _steps(self, fraction: float) -> int:
        return math.floor(fraction / self.step + 1e-9)  # 0.3 / 0.1 is 2.9999999999999996


def progress_line(stage: str, fraction: float, detail: str, elapsed: float, left: float | None) -> str:
    """`finetune: 40% (20/50 steps), 48 s so far, about 72 s to go`."""
    line = f"{stage}: {100 * fraction:.0f}% ({detail}), {elapsed:.0f} s so far"
    if left is not None and fraction < 1.0:
        line += f", about {left:.0f} s to go"
    return line


class ProgressArtifacts:
    """Create and update a progress artifact of the run in progress through the run's own API client."""

    def create(self, percent: float, key: str | None, description: str):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate
        from prefect.utilities.context import get_task_and_flow_run_ids

        task_run_id, flow_run_id = get_task_and_flow_run_ids()
        artifact = ArtifactCreate(
            type="progress",
            key=key,
            description=description,
            data=percent,
            task_run_id=task_run_id,
            flow_run_id=flow_run_id,
        )
        return get_client(sync_client=True).create_artifact(artifact=artifact).id

    def update(self, artifact_id, percent: float, description: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        update = ArtifactUpdate(data=percent, description=description)
        get_client(sync_client=True).update_artifact(artifact_id=artifact_id, artifact=update)


class StageProgress:
    """A `llmpath.progress` reporter for one stage run: a Prefect progress artifact and log lines."""

    def __init__(
        self,
        stage: str,
        recipe_name: str | None,
        logger,
        clock: Callable[[], float] = time.monotonic,
        artifacts: ProgressArtifacts | None = None,
    ):
        self.stage, self.recipe_name, self.logger, self.clock = stage, recipe_name, logger, clock
        self.artifacts = artifacts or ProgressArtifacts()
        self.key = artifact_key(recipe_name, stage, "progress") if recipe_name else None
        self.artifact_id = None
        self.broken = False
        self.started = clock()
        self.first: tuple[float, float] | None = None  # (time, fraction) of the first update: the loop's pace
        self._artifact = Throttle(0.01, ARTIFACT_SECONDS, clock=clock)
        self._log = Throttle(0.1, 0.0, LOG_SECONDS, clock=clock)

    def __call__(self, fraction: float, detail: str) -> None:
        if self._log.due(fraction):
            now = self.clock()
            self.logger.info(
                progress_line(self.stage, fraction, detail, now - self.started, self.left(now, fraction))
            )
        if self.first is None:
            self.first = (self.clock(), fraction)
        if not self.broken and self._artifact.due(fraction):
            self._publish(fraction, detail)

    def left(self, now: float, fraction: float) -> float | None:
        """Seconds to go at the loop's pace since its first update (the stage's set-up is not the loop's)."""
        if self.first is None or fraction <= self.first[1]:
            return None
        since, start = self.first
        return (now - since) * (1.0 - fraction) / (fraction - start)

    def finish(self) -> None:
        """The stage ended well: its artifact (if any) shows 100."""
        sent = self._artifact.sent
        if self.artifact_id is not None and not self.broken and sent is not None and sent < 1.0:
            self._publish(1.0, "done")

    def description(self, detail: str) -> str:
        of = f" of {self.recipe_name}" if self.recipe_name else ""
        return f"{self.stage}{of}: {detail}"

    def _publish(self, fraction: float, detail: str) -> None:
        percent = round(100 * fraction, 1)
        try:
            if self.artifact_id is None:
                self.artifact_id = self.artifacts.create(percent, self.key, self.description(detail))
            else:
                self.artifacts.update(self.artifact_id, percent, self.description(detail))
        except Exception as err:  # the UI's figure is not worth a failed stage
            self.broken = True
            self.logger.warning(f"{self.stage}: progress artifact updates stop ({type(err).__name__}: {err})")


def stage_progress(stage: str, recipe) -> StageProgress | None:
    """The reporter for a stage run in progress (None outside a Prefect task run: plain calls report nothing).
    `recipe` is the stage's recipe argument, else the flow run's."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    if TaskRunContext.get() is None:
        return None
    if recipe is None:
        flow_run = FlowRunContext.get()
        recipe = flow_run.parameters.get("recipe") if flow_run is not None else None
    name = getattr(recipe, "name", None) or (recipe.get("name") if isinstance(recipe, dict) else None)
    return StageProgress(stage, name, get_run_logger())
