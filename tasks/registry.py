"""Stages `register`, `gate`, `mark_deployable` and `promote`: model versions, the `candidate`/`champion`
aliases and their audit trail.

The gate decides after evaluation; `champion` moves last, after the version has a deployable form (and its
Bento), as a compare-and-set under the registry lock (llmpath/locks.py): only if it still points where the
gate read it. An undo touches only the aliases its own run moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from llmpath import faults, lineage, locks, tracking
from llmpath.promotion import Decision, decide
from llmpath.recipes import Recipe, kind_of
from llmpath.results import (
    Evaluation,
    ExportedModel,
    GateDecision,
    ParityResult,
    PromotionResult,
    Registration,
    TrainedModel,
)
from tasks import aliases
from tasks.stages import GateError, stage

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
    Idempotent: a model already registered (same logged model) keeps its version. Under the registry lock,
    so two runs of one recipe never register the same logged model twice."""
    import mlflow

    name = recipe.registered_model
    evals = {f"eval.{k}": f"{v:.6f}" for k, v in candidate.metrics.items()}
    tags = {
        "run_id": trained.run_id,
        "model_uri": trained.model_uri,
        "base_model": recipe.model.base,
        "base_revision": trained.base_revision,
        "recipe": recipe.name,
    } | evals
    if trained.adapter_uri:
        tags["adapter_uri"] = trained.adapter_uri
    with locks.registry_lock(name, "register", create=True):
        registration = register_version(
            name,
            trained.model_uri,
            evals,
            lambda: str(mlflow.register_model(trained.model_uri, name, tags=tags).version),
        )
    with tracking.use_run(run_id):
        mlflow.set_tags({"registered_model": name, "model_version": registration.version})
    return registration


def register_version(
    name: str, source_key: str, evals: dict[str, str], create: Callable[[], str]
) -> Registration:
    """Inside the registry lock: the version registered from `source_key` (its `model_uri` tag), found again
    or made by `create()`, with `candidate` on it. Shared by every kind's registration."""
    client = _client()
    previous = alias_version(name, CANDIDATE)
    version = _existing_version(name, source_key)
    created = version is None
    if created:
        version = create()
        faults.point("register")  # the fault test kills a run here: version made, lease held, no alias yet
        print(f"registered {name} v{version} (alias {CANDIDATE})")
    else:
        for key, value in evals.items():
            client.set_model_version_tag(name, version, key, value)
        print(f"{name} v{version} already holds this model: not registered again")
    _set_alias(name, CANDIDATE, version)
    return Registration(name=name, version=version, previous_candidate=previous, created=created)


def champion_of(name: str, metric: str) -> tuple[str | None, float | None]:
    """The current champion version of `name` and its recorded `eval.<metric>` (None when absent)."""
    version = alias_version(name, CHAMPION)
    if version is None:
        return None, None
    tag = _client().get_model_version(name, version).tags.get(f"eval.{metric}")
    return version, float(tag) if tag is not None else None


def log_champion(run_id: str, metric: str, version: str | None, score: float | None) -> None:
    """`champion.<metric>` (the score the gate read for the champion) next to `base.<metric>` and
    `candidate.<metric>` on every run, so runs of a recipe compare on all three in the MLflow UI. A run
    metric of no logged model: the champion is an earlier run's."""
    client = _client()
    client.set_tag(run_id, "gate.champion_version", version or "none")
    if score is not None:
        client.log_metric(run_id, f"champion.{metric}", score)


def kept_as_champion(name: str, version: str) -> GateDecision:
    reason = f"v{version} is already the champion"
    print(f"gate: kept: {reason}")
    return GateDecision(promote=False, reason=reason, model=name, version=version, champion_read=version)


def record_decision(
    registration: Registration, champion_version: str | None, decision: Decision, run_id: str
) -> GateDecision:
    """Write a gate decision on the version and the run. Nothing moves here: `champion` moves last (stage
    `promote`), once the version has a deployable form. Shared by every kind's gate."""
    import mlflow

    record = decision.as_dict() | {
        "model": registration.name,
        "version": registration.version,
        "alias": CHAMPION,
        "previous_version": champion_version,
        "who": aliases.who(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    outcome = "approved" if decision.promote else "kept"  # approved: promoted once deployable
    _tag_version(registration.name, registration.version, outcome, decision.reason, record)
    with tracking.use_run(run_id):
        mlflow.log_dict(record, "promotion/decision.json")
        mlflow.set_tags({"promotion.decision": outcome, "promotion.reason": decision.reason})
    print(f"gate: {outcome}: {decision.reason}")
    return GateDecision(
        promote=decision.promote,
        reason=decision.reason,
        model=registration.name,
        version=registration.version,
        champion_read=champion_version,
    )


def _tag_version(name: str, version: str, outcome: str, reason: str, record: dict | None = None) -> None:
    client = _client()
    tags = {"promotion.decision": outcome, "promotion.reason": reason}
    if record is not None:
        tags["promotion.record"] = json.dumps(record)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def gate_candidate(
    recipe: Recipe, registration: Registration, base: Evaluation, candidate: Evaluation, run_id: str
) -> GateDecision:
    """Decide whether the candidate beats the base model and the current champion (it moves later)."""
    from mlflow.entities import RunTag

    metric = recipe.eval.metric
    champion_version, champion_score = champion_of(registration.name, metric)
    log_champion(run_id, metric, champion_version, champion_score)
    kind_of(recipe).compare(recipe, base, candidate, run_id)  # what the gate weighs, side by side in MLflow
    if champion_version == registration.version:
        kept = kept_as_champion(registration.name, champion_version)
        tags = {"promotion.decision": "kept", "promotion.reason": kept.reason}  # the run says so too
        _client().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return kept
    decision = decide(
        metric,
        candidate.metrics[metric],
        base.metrics[metric],
        champion_score,
        champion_version,
        recipe.eval.min_improvement,
    )
    return record_decision(registration, champion_version, decision, run_id)


def promote_decided(gate: GateDecision, run_id: str) -> PromotionResult:
    """The last stage: move `champion` to the version the gate approved, as a compare-and-set. It moves only
    if `champion` still points where the gate read it; a move made meanwhile (by another run, `llmpath
    promote`, a rollback) is kept and the run says so."""
    import mlflow

    name = gate.model
    if not gate.promote:
        current = alias_version(name, CHAMPION)
        return PromotionResult(
            promoted=False, reason=gate.reason, champion_version=current, previous_champion=current
        )
    with locks.registry_lock(name, f"promote v{gate.version}"):
        current = alias_version(name, CHAMPION)
        tags = _client().get_model_version(name, gate.version).tags
        if current != gate.champion_read:
            last = aliases.last_move(name, CHAMPION)
            by = f"{last.who} ({last.action})" if last and last.to_version == current else "outside llmpath"
            reason = (
                f"kept: champion moved by {by} meanwhile (v{gate.champion_read or '-'} -> v{current or '-'}); "
                f"v{gate.version} was approved ({gate.reason}) but does not overwrite it"
            )
            moved = False
        elif "deployable.uri" not in tags:  # mark_deployable runs first: a version without a form never ships
            raise GateError(f"{name} v{gate.version} has no deployable form: champion stays v{current}")
        else:
            _set_alias(name, CHAMPION, gate.version)
            aliases.record(
                name,
                CHAMPION,
                "gate",
                current,
                gate.version,
                gate.reason,
                version_metrics(name, gate.version),
            )
            reason, moved = gate.reason, True
    _tag_version(name, gate.version, "promoted" if moved else "kept", reason)
    with tracking.use_run(run_id):
        mlflow.set_tags({"promotion.decision": "promoted" if moved else "kept", "promotion.reason": reason})
    _client().log_metric(run_id, "promotion.promoted", float(moved))  # the run's, not a model's
    print(f"promotion: promoted: {reason}" if moved else f"promotion: {reason}")
    return PromotionResult(
        promoted=moved,
        reason=reason,
        champion_version=gate.version if moved else current,
        previous_champion=current,
    )


def undo_registration(registration: Registration, promotion: PromotionResult | None, why: str = "") -> None:
    """After a failed run: undo the moves THIS run made, each only if the alias still points where this run
    put it (a move made meanwhile by someone else stands), then delete the new version unless an alias
    still points at it (MLflow would drop the alias with it, and the model must keep the champion it had)."""
    client = _client()
    name, version = registration.name, registration.version
    with locks.registry_lock(name, f"undo v{version}"):
        if promotion is not None and promotion.promoted:
            if alias_version(name, CHAMPION) == version:
                _restore(name, CHAMPION, promotion.previous_champion)
                aliases.record(
                    name,
                    CHAMPION,
                    "undo",
                    version,
                    promotion.previous_champion,
                    "the run that promoted it failed",
                )
            else:
                print(f"run failed: {name}@{CHAMPION} was moved since this run set it: left as it is")
        if alias_version(name, CANDIDATE) == version and registration.previous_candidate != version:
            _restore(name, CANDIDATE, registration.previous_candidate)
        if not registration.created:  # the version predates this run: keep it
            print(f"run failed: put back the aliases this run had moved ({name} v{version} predates it)")
            return
        held = sorted(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)
        if held:
            client.set_model_version_tag(name, version, "llmpath.failed", why[:4000] or "its run failed")
            print(
                f"run failed: kept {name} v{version}, tagged llmpath.failed: {', '.join(held)} point(s) at it"
            )
            return
        lineage.drop_deployable_model(name, version)
        client.delete_model_version(name, version)
        if not client.search_model_versions(f"name='{name}'"):
            client.delete_registered_model(name)  # it existed only for this failed run
        print(f"run failed: removed {name} v{version} and restored the aliases this run had moved")


def _restore(name: str, alias: str, version: str | None) -> None:
    """Point `alias` back at `version`; when that version is gone (or was None), remove the alias."""
    from mlflow.exceptions import MlflowException

    try:
        _set_alias(name, alias, version)
    except MlflowException:
        _set_alias(name, alias, None)


def version_metrics(name: str, version: str) -> dict[str, float]:
    """The `eval.*` tags of a version as floats (they travel with every alias move)."""
    tags = _client().get_model_version(name, version).tags
    return {k: float(v) for k, v in tags.items() if k.startswith("eval.")}


def mark_deployable_version(
    registration: Registration, exported: ExportedModel, checked: ParityResult, run_id: str | None = None
) -> None:
    """Attach the exported forms and the parity verdict to the registered version. With `run_id`, the form
    that ships is also a logged model (onnx flavour, output of that run) named by `deployable.model_uri`;
    a version whose form is already logged keeps its logged model (a cached re-run logs nothing)."""
    client = _client()
    tags = {
        "onnx.fp32_uri": exported.fp32_uri,
        "deployable.form": checked.deployable_form,
        "deployable.uri": checked.deployable_uri,
        "deployable.reason": checked.reason,
    } | ({"onnx.int8_uri": exported.int8_uri} if exported.int8_uri else {})
    tags |= {f"onnx.{form}_uri": uri for form, uri in exported.quantized.items()}
    if run_id is not None:
        tags["deployable.model_uri"] = lineage.deployable_model(
            registration.name, registration.version, checked, run_id
        )
    for key, value in tags.items():
        client.set_model_version_tag(registration.name, registration.version, key, value)


def move_champion(name: str, version: str, why: str, force: bool = False) -> aliases.Move | None:
    """Point `champion` at `version` by hand (it must have a deployable form unless forced); record the move.
    Under the registry lock: the read of the current champion and the move are one step."""
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
    with locks.registry_lock(name, f"promote v{version} by hand"):
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
    if not aliases.history(name, CHAMPION):
        raise LookupError("no recorded champion moves: nothing to roll back")
    with locks.registry_lock(name, "rollback"):
        current = alias_version(name, CHAMPION)
        target = aliases.rollback_target(aliases.history(name, CHAMPION), current)
        _set_alias(name, CHAMPION, target)
        move = aliases.record(name, CHAMPION, "rollback", current, target, why, version_metrics(name, target))
    print(f"{name}: champion rolled back v{current} -> v{target} ({why})")
    return move


# Registry stages touch live state (aliases move between runs): never cached. `register` is idempotent, so it
# may retry; `gate` and `promote` may too (they re-read the champion each time).
register = stage(register_model, name="register")
gate = stage(gate_candidate, name="gate")
mark_deployable = stage(mark_deployable_version, name="mark_deployable")
promote = stage(promote_decided, name="promote")
