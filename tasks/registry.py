"""Stages `register` and `promote`: model versions, the `candidate`/`champion` aliases and their audit trail."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

from prefect import task

from llmpath import tracking
from llmpath.config import Recipe
from llmpath.promotion import decide
from tasks.results import Evaluation, PromotionResult, Registration, TrainedModel

CANDIDATE, CHAMPION = "candidate", "champion"


def _client():
    import mlflow

    tracking.configure()
    return mlflow.MlflowClient()


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _set_alias(name: str, alias: str, version: str | None) -> None:
    client = _client()
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


def register_model(recipe: Recipe, trained: TrainedModel, candidate: Evaluation) -> Registration:
    """Register the merged model as a new version, tagged with its lineage, and point `candidate` at it."""
    import mlflow

    tracking.configure()
    name = recipe.registered_model
    previous = alias_version(name, CANDIDATE)
    tags = {
        "run_id": trained.run_id,
        "adapter_uri": trained.adapter_uri,
        "base_model": recipe.model.base,
        "base_revision": trained.base_revision,
        "recipe": recipe.name,
    } | {f"eval.{k}": f"{v:.6f}" for k, v in candidate.metrics.items()}
    version = mlflow.register_model(trained.model_uri, name, tags=tags).version
    _set_alias(name, CANDIDATE, version)
    with tracking.use_run(trained.run_id):
        mlflow.set_tags({"registered_model": name, "model_version": version})
    print(f"registered {name} v{version} (alias {CANDIDATE})")
    return Registration(name=name, version=str(version), previous_candidate=previous)


def promote_candidate(
    recipe: Recipe, registration: Registration, base: Evaluation, candidate: Evaluation
) -> PromotionResult:
    """Move `champion` only if the candidate beats the base model and the current champion."""
    import mlflow

    client = _client()
    metric, name = recipe.eval.metric, registration.name
    champion_version = alias_version(name, CHAMPION)
    champion_score = None
    if champion_version is not None:
        tag = client.get_model_version(name, champion_version).tags.get(f"eval.{metric}")
        champion_score = float(tag) if tag is not None else None
    decision = decide(
        metric,
        candidate.metrics[metric],
        base.metrics[metric],
        champion_score,
        champion_version,
        recipe.eval.min_improvement,
    )
    record = decision.as_dict() | {
        "model": name,
        "version": registration.version,
        "alias": CHAMPION,
        "previous_version": champion_version,
        "who": getpass.getuser(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision.promote:
        _set_alias(name, CHAMPION, registration.version)
    outcome = "promoted" if decision.promote else "kept"
    for key, value in {
        "promotion.decision": outcome,
        "promotion.reason": decision.reason,
        "promotion.record": json.dumps(record),
    }.items():
        client.set_model_version_tag(name, registration.version, key, value)
    run_id = client.get_model_version(name, registration.version).tags["run_id"]
    with tracking.use_run(run_id):
        mlflow.log_dict(record, "promotion/decision.json")
        mlflow.set_tags({"promotion.decision": outcome, "promotion.reason": decision.reason})
        mlflow.log_metric("promotion.promoted", float(decision.promote))
    print(f"promotion: {outcome}: {decision.reason}")
    return PromotionResult(
        promoted=decision.promote,
        reason=decision.reason,
        champion_version=registration.version if decision.promote else champion_version,
        previous_champion=champion_version,
    )


def undo_registration(registration: Registration, promotion: PromotionResult | None) -> None:
    """After a failed run: put the aliases back where they were and delete the new version."""
    client = _client()
    if promotion is not None and promotion.promoted:
        _set_alias(registration.name, CHAMPION, promotion.previous_champion)
    if registration.previous_candidate is not None:
        _set_alias(registration.name, CANDIDATE, registration.previous_candidate)
    client.delete_model_version(registration.name, registration.version)
    if not client.search_model_versions(f"name='{registration.name}'"):
        client.delete_registered_model(registration.name)  # it existed only for this failed run
    print(f"run failed: removed {registration.name} v{registration.version} and restored its aliases")


register = task(register_model, name="register")  # no retry: a retry could register twice
promote = task(promote_candidate, name="promote", retries=2, retry_delay_seconds=3)
