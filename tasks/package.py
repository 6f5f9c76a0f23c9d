"""Stage `package`: the champion's deployable ONNX model into the BentoML store and an offline `bentoml build`."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from prefect import task

from llmpath import tracking
from llmpath.config import Recipe
from tasks.registry import CHAMPION, alias_version
from tasks.results import PackagedBento

SERVICE_DIR = Path(__file__).resolve().parent.parent / "bentos" / "classifier"
# What the Bento needs at serve time; installed only when containerizing (we build offline, unlocked).
BENTO_PACKAGES = ["onnxruntime>=1.32,<1.33", "transformers>=4.57,<4.58", "numpy", "pydantic>=2.7"]


def import_champion(recipe: Recipe) -> tuple[str, str, dict[str, str]]:
    """Copy the champion's deployable files into the BentoML model store, labelled with their MLflow origin."""
    import bentoml
    import mlflow

    name = recipe.registered_model
    version = alias_version(name, CHAMPION)
    if version is None:
        raise LookupError(f"{name} has no `{CHAMPION}` yet: nothing to package")
    tracking.configure()
    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    if "deployable.uri" not in tags:
        raise LookupError(f"{name} v{version} has no deployable ONNX form (its parity stage did not pass)")
    folder = tracking.download(tags["deployable.uri"])
    labels = {
        "registered_model": name,
        "version": str(version),
        "alias": CHAMPION,
        "form": tags["deployable.form"],
        "mlflow_run_id": tags.get("run_id", ""),
    }
    metadata = {"max_length": recipe.model.max_length} | {
        k: float(v) for k, v in tags.items() if k.startswith("eval.")
    }
    with bentoml.models.create(f"{recipe.serve.bento_name}-onnx", labels=labels, metadata=metadata) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return str(model.tag), str(version), labels


def build_bento(recipe: Recipe) -> PackagedBento:
    """Build the classifier Bento around the champion (offline: no dependency lock)."""
    import bentoml
    import mlflow

    model_tag, version, labels = import_champion(recipe)
    ctx = Path(tempfile.mkdtemp(prefix="llmpath-bento-"))
    for file in ("service.py", "runtime.py"):
        shutil.copy2(SERVICE_DIR / file, ctx / file)
    s = recipe.serve
    config = {
        "model_tag": model_tag,
        "name": s.bento_name,
        "host": s.host,
        "port": s.port,
        "max_texts": s.max_texts,
        "max_chars": s.max_chars,
        "max_batch_size": s.max_batch_size,
        "max_latency_ms": s.max_latency_ms,
    }
    (ctx / "bento_config.json").write_text(json.dumps(config, indent=2))
    bento = bentoml.bentos.build(
        "service:Classifier",
        name=s.bento_name,
        labels=labels,
        include=["service.py", "runtime.py", "bento_config.json"],
        python={"packages": BENTO_PACKAGES, "lock_packages": False},
        models=[model_tag],
        build_ctx=str(ctx),
    )
    run_id = labels["mlflow_run_id"]
    if run_id:
        with tracking.use_run(run_id):
            mlflow.set_tags({"bento.tag": str(bento.tag), "bento.model_tag": model_tag})
    mlflow.MlflowClient().set_model_version_tag(recipe.registered_model, version, "bento.tag", str(bento.tag))
    print(
        f"built Bento {bento.tag} with {model_tag} ({labels['form']}, {recipe.registered_model} v{version})"
    )
    return PackagedBento(tag=str(bento.tag), model_tag=model_tag, version=version)


package = task(build_bento, name="package", retries=1, retry_delay_seconds=3)
