"""Which Bento `llmpath serve` runs: the one the champion version names (tag `bento.tag`, written at
packaging), not the newest one built. After a rollback the rolled-back model stops being served."""

from __future__ import annotations

from llmpath import tracking


class NothingToServe(LookupError):
    """No Bento can be served for this service; the message says what to run."""


def champion_bento(bento_name: str, build_hint: str) -> tuple[str, str, str]:
    """(Bento tag, registered model, champion version) to serve for Bentos named `bento_name`. The model is
    the one the newest such Bento of this tracking store was built for. `build_hint`: the command that builds
    one (said when there is none)."""
    import bentoml
    import mlflow
    from bentoml.exceptions import NotFound
    from mlflow.exceptions import MlflowException

    try:
        bentos = sorted(bentoml.list(bento_name), key=lambda b: b.info.creation_time)
    except NotFound:
        bentos = []
    if not bentos:
        raise NothingToServe(f"No Bento named {bento_name!r} yet. Build one: {build_hint}")
    store = tracking.store_digest()
    ours = [b for b in bentos if b.info.labels.get("store", store) == store] or bentos
    model = ours[-1].info.labels.get("registered_model")
    if not model:
        raise NothingToServe(
            f"the Bentos named {bento_name!r} name no registered model: rebuild: {build_hint}"
        )
    tracking.configure()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model, "champion")
    except MlflowException:
        raise NothingToServe(
            f"{model} has no champion in {tracking.configure()}: promote one (llmpath promote {model} VERSION "
            f"--reason ...) or run its recipe ({build_hint})"
        ) from None
    tag = version.tags.get("bento.tag")
    if tag:
        try:
            bentoml.get(tag)
            return tag, model, str(version.version)
        except NotFound:
            pass
    raise NothingToServe(
        f"{model}@champion is v{version.version}, which has no Bento yet: run its recipe to package it "
        f"({build_hint}; cached stages make it quick), then serve again"
    )
