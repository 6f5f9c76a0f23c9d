"""Stage `package`: the deployable form of the version the gate chose (or of the champion) into the BentoML
store and an offline `bentoml build`. It runs before `champion` moves, so a champion always has a Bento."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bentos import serve_config
from llmpath import faults, tracking
from llmpath.protocol import BentoSpec
from llmpath.recipes import Recipe, kind_of
from llmpath.results import PackagedBento
from tasks.registry import CHAMPION, alias_version
from tasks.stages import stage

BENTOS = Path(__file__).resolve().parent.parent / "bentos"
# Every Bento sits behind the same request guard (body limits, JSON only, queueing, OpenAI-shaped errors) and
# reads its bento_config.json through the same base schema (its own settings module extends it).
SHARED = {"guard.py": BENTOS / "guard.py", "serve_config.py": BENTOS / "serve_config.py"}
# What the Bento needs at serve time; installed only when containerizing (we build offline, unlocked).
BENTO_PACKAGES = ["onnxruntime>=1.32,<1.33", "transformers>=4.57,<4.58", "numpy", "pydantic>=2.7"]


def version_labels(recipe: Recipe, version: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Labels naming exactly what a Bento would hold (version, form, service code, serve settings). `version`:
    the one the gate chose (it becomes champion after packaging); None: the current champion."""
    import mlflow

    name = recipe.registered_model
    version = version or alias_version(name, CHAMPION)
    if version is None:
        raise LookupError(f"{name} has no `{CHAMPION}` yet: nothing to package")
    tracking.configure()
    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    if "deployable.uri" not in tags:
        raise LookupError(f"{name} v{version} has no deployable ONNX form (its parity stage did not pass)")
    family = kind_of(recipe).family
    digest = hashlib.sha256(serve_settings(recipe).settings_json().encode())  # validated before any import
    digest.update(json.dumps(family.bento_inputs(recipe), sort_keys=True).encode())
    for path in service_files(family.bento).values():
        digest.update(path.read_bytes())
    labels = {
        "registered_model": name,
        "version": str(version),
        "alias": CHAMPION,
        "form": tags["deployable.form"],
        "mlflow_run_id": tags.get("run_id", ""),
        "build_digest": digest.hexdigest()[:16],
        "store": tracking.store_digest(),  # `llmpath gc` judges only the Bentos of its own store
    }
    return labels, tags


def serve_settings(recipe: Recipe, packaged: dict[str, Any] | None = None) -> serve_config.BaseServe:
    """The Bento's typed serve config: the recipe's serve section and the other sections its Bento reads (rag:
    `ask`), plus what packaging made (`packaged`: model tags; rag: the index's search settings). Raises
    ServeConfigError naming the key."""
    model = kind_of(recipe).family.bento.config
    # A section the Bento reads may hold more in the recipe (rag's ask: what evaluation reads): the Bento's
    # schema for it decides what goes in.
    extra = {
        section: getattr(recipe, section).model_dump(
            include=set(model.model_fields[section].annotation.model_fields)
        )
        for section in model.SECTIONS
    }
    return serve_config.from_recipe_sections(model, recipe.serve.model_dump(), extra | (packaged or {}))


def service_files(bento: BentoSpec) -> dict[str, Path]:
    """Name in the Bento -> source file: the family's service folder, the files it borrows, its serve config's
    module (bentos/chat/chat_config.py) and the shared ones."""
    folder = BENTOS / bento.folder
    borrowed = {name: BENTOS / source for name, source in bento.borrowed.items()}
    config = Path(inspect.getfile(bento.config))
    return {name: folder / name for name in bento.files} | borrowed | {config.name: config} | SHARED


def existing_bento(bento_name: str, labels: dict[str, str]) -> str | None:
    """The newest Bento already built from exactly these labels, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = bentoml.list(bento_name)
    except NotFound:  # no Bento of that name yet
        return None
    matches = [b for b in bentos if all(b.info.labels.get(k) == v for k, v in labels.items())]
    return str(max(matches, key=lambda b: b.info.creation_time).tag) if matches else None


def import_champion(recipe: Recipe, labels: dict[str, str], tags: dict[str, str]) -> str:
    """Copy the champion's deployable files into the BentoML model store, labelled with their MLflow origin."""
    import bentoml

    folder = tracking.download(tags["deployable.uri"])
    metadata = {"max_length": recipe.model.max_length, "kind": recipe.kind} | {
        k: float(v) for k, v in tags.items() if k.startswith("eval.")
    }
    with bentoml.models.create(f"{recipe.serve.bento_name}-onnx", labels=labels, metadata=metadata) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return str(model.tag)


def build_bento(recipe: Recipe, version: str | None = None) -> PackagedBento:
    """Build the kind's Bento around `version` (the one the gate chose; default: the champion), offline (no
    dependency lock); reuse an identical one. The version records its Bento (`bento.tag`): `llmpath serve`
    serves the champion's."""
    import bentoml
    import mlflow

    labels, tags = version_labels(recipe, version)
    version = labels["version"]
    reused = existing_bento(recipe.serve.bento_name, labels)
    if reused:
        print(f"{recipe.registered_model} v{version} is already packaged as {reused}: not rebuilt")
        model_tag = str(bentoml.get(reused).info.models[0].tag)
        if tags.get("bento.tag") != reused:
            mlflow.MlflowClient().set_model_version_tag(recipe.registered_model, version, "bento.tag", reused)
        return PackagedBento(tag=reused, model_tag=model_tag, version=version)
    family = kind_of(recipe).family
    packaged = family.import_models(recipe, labels, tags)
    if packaged is None:
        packaged = {"model_tag": import_champion(recipe, labels, tags)}
    packages = packaged.pop("extra_packages", [])
    model_tags = [v for k, v in packaged.items() if k.endswith("model_tag")]
    model_tag = model_tags[0]
    bento = build_service(serve_settings(recipe, packaged), family.bento, labels, model_tags, packages)
    faults.point("package")  # the fault test kills a run here: Bento built, not yet named on its version
    if labels["mlflow_run_id"]:
        with tracking.use_run(labels["mlflow_run_id"]):
            mlflow.set_tags({"bento.tag": str(bento.tag), "bento.model_tag": model_tag})
    mlflow.MlflowClient().set_model_version_tag(recipe.registered_model, version, "bento.tag", str(bento.tag))
    print(
        f"built Bento {bento.tag} with {model_tag} ({labels['form']}, {recipe.registered_model} v{version})"
    )
    return PackagedBento(tag=str(bento.tag), model_tag=model_tag, version=version)


def build_service(
    config: serve_config.BaseServe,
    bento: BentoSpec,
    labels: dict[str, str],
    model_tags: list[str],
    packages: list[str],
):
    """`bentoml build` of a family's Bento: its service files and bento_config.json in a fresh build folder,
    the models by tag; the Bento."""
    import bentoml

    ctx = tracking.scratch("bento-")
    files = service_files(bento)
    for name, path in files.items():
        shutil.copy2(path, ctx / name)
    serve_config.write(ctx, config)
    # The build imports `service` (which imports `runtime`) from the build folder. A module of that name
    # imported by an earlier build in this process (another kind, other settings) must not stand in for it.
    for module in (Path(f).stem for f in files):
        sys.modules.pop(module, None)
    return bentoml.bentos.build(
        f"service:{bento.service_class}",
        name=config.name,
        labels=labels,
        include=[*files, serve_config.FILE],
        python={
            "packages": BENTO_PACKAGES + list(bento.packages) + packages,
            "lock_packages": False,
        },
        models=model_tags,
        build_ctx=str(ctx),
    )


package = stage(build_bento, name="package")  # not cached: it reads the live registry (reuses an equal Bento)
