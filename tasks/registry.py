"""Stages `register` and `promote`: model versions, the `candidate`/`champion` aliases and their audit trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from llmpath import tracking
from llmpath.config import Recipe
from llmpath.promotion import Decision, decide
from tasks import aliases
from tasks.results import Evaluation, ExportedModel, ParityResult, PromotionResult, Registration, TrainedModel
from tasks.stages import stage

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


def _existing_version(name: str, model_uri: str) -> str | None:
    """The version already registered from this exact logged model (a cached re-run registers nothing new)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = _client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    matches = [v for v in versions if v.tags.get("model_uri") == model_uri]
    return str(max(int(v.version) for v in matches)) if matches else None


def register_model(recipe: Recipe, trained: TrainedModel, candidate: Evaluation, run_id: str) -> Registration:
    """Register the merged model as a new version, tagged with its lineage, and point `candidate` at it.
    Idempotent: a model already registered (same logged model) keeps its version."""
    import mlflow

    tracking.configure()
    client = _client()
    name = recipe.registered_model
    previous = alias_version(name, CANDIDATE)
    evals = {f"eval.{k}": f"{v:.6f}" for k, v in candidate.metrics.items()}
    version = _existing_version(name, trained.model_uri)
    if version is None:
        tags = {
            "run_id": trained.run_id,
            "model_uri": trained.model_uri,
            "adapter_uri": trained.adapter_uri,
            "base_model": recipe.model.base,
            "base_revision": trained.base_revision,
            "recipe": recipe.name,
        } | evals
        version = str(mlflow.register_model(trained.model_uri, name, tags=tags).version)
        print(f"registered {name} v{version} (alias {CANDIDATE})")
        created = True
    else:
        for key, value in evals.items():
            client.set_model_version_tag(name, version, key, value)
        print(f"{name} v{version} already holds this model: not registered again")
        created = False
    _set_alias(name, CANDIDATE, version)
    with tracking.use_run(run_id):
        mlflow.set_tags({"registered_model": name, "model_version": version})
    return Registration(name=name, version=version, previous_candidate=previous, created=created)


def champion_of(name: str, metric: str) -> tuple[str | None, float | None]:
    """The current champion version of `name` and its recorded `eval.<metric>` (None when absent)."""
    version = alias_version(name, CHAMPION)
    if version is None:
        return None, None
    tag = _client().get_model_version(name, version).tags.get(f"eval.{metric}")
    return version, float(tag) if tag is not None else None


def kept_as_champion(version: str) -> PromotionResult:
    reason = f"v{version} is already the champion"
    print(f"promotion: kept: {reason}")
    return PromotionResult(promoted=False, reason=reason, champion_version=version, previous_champion=version)


def apply_decision(
    registration: Registration, champion_version: str | None, decision: Decision, run_id: str
) -> PromotionResult:
    """Carry out a gate decision: move `champion` (recorded in the alias history) or keep it, and write the
    decision on the version and the run. Shared by every kind's gate."""
    import mlflow

    client = _client()
    name = registration.name
    record = decision.as_dict() | {
        "model": name,
        "version": registration.version,
        "alias": CHAMPION,
        "previous_version": champion_version,
        "who": aliases.who(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision.promote:
        _set_alias(name, CHAMPION, registration.version)
        aliases.record(
            name,
            CHAMPION,
            "gate",
            champion_version,
            registration.version,
            decision.reason,
            version_metrics(name, registration.version),
        )
    outcome = "promoted" if decision.promote else "kept"
    for key, value in {
        "promotion.decision": outcome,
        "promotion.reason": decision.reason,
        "promotion.record": json.dumps(record),
    }.items():
        client.set_model_version_tag(name, registration.version, key, value)
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


def promote_candidate(
    recipe: Recipe, registration: Registration, base: Evaluation, candidate: Evaluation, run_id: str
) -> PromotionResult:
    """Move `champion` only if the candidate beats the base model and the current champion."""
    metric = recipe.eval.metric
    champion_version, champion_score = champion_of(registration.name, metric)
    if recipe.kind == "chat":
        from tasks.chat import log_comparison

        log_comparison(base, candidate, run_id)  # the answers the gate weighs, side by side in MLflow
    if champion_version == registration.version:
        return kept_as_champion(champion_version)
    decision = decide(
        metric,
        candidate.metrics[metric],
        base.metrics[metric],
        champion_score,
        champion_version,
        recipe.eval.min_improvement,
    )
    return apply_decision(registration, champion_version, decision, run_id)


def undo_registration(registration: Registration, promotion: PromotionResult | None) -> None:
    """After a failed run: put the aliases back where they were and delete the new version."""
    client = _client()
    if promotion is not None and promotion.promoted:
        _set_alias(registration.name, CHAMPION, promotion.previous_champion)
        aliases.record(
            registration.name,
            CHAMPION,
            "undo",
            registration.version,
            promotion.previous_champion,
            "the run that promoted it failed",
        )
    if registration.previous_candidate is not None:
        _set_alias(registration.name, CANDIDATE, registration.previous_candidate)
    if not registration.created:  # the version predates this run: keep it
        print(f"run failed: restored the aliases of {registration.name}")
        return
    client.delete_model_version(registration.name, registration.version)
    if not client.search_model_versions(f"name='{registration.name}'"):
        client.delete_registered_model(registration.name)  # it existed only for this failed run
    print(f"run failed: removed {registration.name} v{registration.version} and restored its aliases")


def version_metrics(name: str, version: str) -> dict[str, float]:
    """The `eval.*` tags of a version as floats (they travel with every alias move)."""
    tags = _client().get_model_version(name, version).tags
    return {k: float(v) for k, v in tags.items() if k.startswith("eval.")}


def mark_deployable_version(
    registration: Registration, exported: ExportedModel, checked: ParityResult
) -> None:
    """Attach the exported forms and the parity verdict to the registered version."""
    client = _client()
    tags = {
        "onnx.fp32_uri": exported.fp32_uri,
        "deployable.form": checked.deployable_form,
        "deployable.uri": checked.deployable_uri,
        "deployable.reason": checked.reason,
    } | ({"onnx.int8_uri": exported.int8_uri} if exported.int8_uri else {})
    tags |= {f"onnx.{form}_uri": uri for form, uri in exported.quantized.items()}
    for key, value in tags.items():
        client.set_model_version_tag(registration.name, registration.version, key, value)


def move_champion(name: str, version: str, why: str, force: bool = False) -> aliases.Move | None:
    """Point `champion` at `version` by hand (it must have a deployable form unless forced); record the move."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        tags = client.get_model_version(name, version).tags
    except MlflowException:
        raise LookupError(f"{name} has no version {version}") from None
    if "deployable.uri" not in tags and not force:
        raise LookupError(
            f"{name} v{version} has no deployable ONNX form (its parity stage did not pass); --force to move anyway"
        )
    current = alias_version(name, CHAMPION)
    if current == str(version):
        print(f"{name} v{version} is already the champion: nothing to do")
        return None
    _set_alias(name, CHAMPION, str(version))
    move = aliases.record(
        name, CHAMPION, "promote", current, str(version), why, version_metrics(name, version)
    )
    print(f"{name}: champion v{current or '-'} -> v{version} ({why})")
    return move


def roll_back_champion(name: str, why: str) -> aliases.Move:
    """Move `champion` back to the version it held before the last recorded move; record it."""
    current = alias_version(name, CHAMPION)
    target = aliases.rollback_target(aliases.history(name, CHAMPION), current)
    _set_alias(name, CHAMPION, target)
    move = aliases.record(name, CHAMPION, "rollback", current, target, why, version_metrics(name, target))
    print(f"{name}: champion rolled back v{current} -> v{target} ({why})")
    return move


# Registry stages touch live state (aliases move between runs): never cached. `register` is idempotent, so it
# may retry; `promote` may too (it re-reads the champion each time).
register = stage(register_model, name="register")
promote = stage(promote_candidate, name="promote")
mark_deployable = stage(mark_deployable_version, name="mark_deployable")
