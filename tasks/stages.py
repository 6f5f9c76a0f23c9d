"""How a plain stage function becomes a Prefect task: a content cache key, retries with backoff for transient
failures only, and a declared hardware need that routing reads.

A stage's cache key covers exactly what decides its result: the inputs it names (data fingerprint, upstream
artifact URIs, base model revision), its slice of the recipe, the source code of its module, and the MLflow
store its references point into. Run ids are not part of it: a cached result refers to the run that made it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any, Literal

from prefect import Task, task
from prefect.cache_policies import CachePolicy
from prefect.tasks import exponential_backoff

from llmpath import progress, settings
from llmpath.protocol import package_digest
from llmpath.results import GateError
from tasks.progress import stage_progress

Hardware = Literal["cpu", "gpu-preferred", "gpu-required"]
KeyFn = Callable[..., dict[str, Any]]

# Every declared stage by name: routing and the remote stage flow look them up here.
STAGES: dict[str, Task] = {}
_KEYS: dict[str, Callable[..., str]] = {}


# Errors a retry cannot fix, so they fail at once: bad recipes, bad data and missing models (RecipeError,
# DataError and ModelSourceError are ValueErrors), wrong types, missing entries, failed gates.
PERMANENT = (ValueError, TypeError, LookupError, GateError)


def is_transient(_task, _task_run, state) -> bool:
    """Retry condition: retry anything but the permanent errors above."""
    try:
        state.result()
    except PERMANENT:
        return False
    except BaseException:
        return True
    return True


def code_version(*modules: str) -> str:
    """Digest of the source files that implement a stage: its module and every first-party module it imports
    (the shared loop, the helpers), found from the imports themselves."""
    return package_digest(*modules)


def content_key(stage: str, content: dict[str, Any], code: str) -> str:
    """The cache key of one stage call: stage name, its content, its code, and the store its references use."""
    blob = json.dumps(
        {"stage": stage, "code": code, "store": settings.tracking_uri(), "content": content},
        sort_keys=True,
        default=str,
    )
    return f"{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def stage(
    fn: Callable,
    *,
    name: str,
    key: KeyFn | None = None,
    hardware: Hardware = "cpu",
    retries: int = 2,
    version: Callable[..., str] | None = None,
) -> Task:
    """Declare `fn` as the stage `name`. With `key`, its results are cached across runs by content;
    `key(**call_arguments)` returns the dict that decides the result (never a run id). The code version is
    the stage module's import closure plus `version(**call_arguments)` (the recipe's kind: its package and
    what it imports)."""
    module = fn.__module__

    def cache_key(_ctx, parameters: dict[str, Any]) -> str:
        code = code_version(module) + (version(**parameters) if version else "")
        return content_key(name, key(**parameters), code)

    wrapped = task(
        reporting_progress(fn, name),
        name=name,
        tags=[f"hardware:{hardware}"],
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=2) if retries else 0,
        retry_jitter_factor=0.5 if retries else None,
        retry_condition_fn=is_transient,
        cache_policy=CachePolicy.from_cache_key_fn(cache_key) if key else None,
        persist_result=True if key else None,
        result_serializer="json",
    )
    STAGES[name] = wrapped
    if key:
        _KEYS[name] = lambda **parameters: cache_key(None, parameters)
    return wrapped


def reporting_progress(fn: Callable, name: str) -> Callable:
    """`fn` with a Prefect progress reporter installed around it (tasks/progress.py): the loops it runs show
    their progress in the stage run's artifact and log. Same signature, annotations and module as `fn`."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        recipe = signature.bind_partial(*args, **kwargs).arguments.get("recipe")
        reporter = stage_progress(name, recipe)
        if reporter is None:
            return fn(*args, **kwargs)
        with progress.reporting(reporter):
            result = fn(*args, **kwargs)
        reporter.finish()
        return result

    return run


def hardware_of(stage_task: Task) -> Hardware:
    for tag in stage_task.tags:
        if tag.startswith("hardware:"):
            return tag.split(":", 1)[1]  # type: ignore[return-value]
    return "cpu"


def stage_key(stage_task: Task, **parameters: Any) -> str | None:
    """The cache key a stage call would get (the training stage uses it to find its checkpoints)."""
    fn = _KEYS.get(stage_task.name)
    return fn(**parameters) if fn else None


def kind_version(recipe, **_: Any) -> str:
    """The code version of the recipe's kind (its package and all it imports): a stage's `version`."""
    from llmpath.recipes import kind_of

    return kind_of(recipe).code_version()
