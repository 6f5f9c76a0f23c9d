"""What the rag Bento holds: the champion's collection (a Milvus Lite copy of its own, or the server's), its
embedder, and the ONNX chat model `/ask` generates with (also what the answer evaluation uses)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmpath import settings, tracking
from llmpath.families.index import vectors
from llmpath.sources import resolve_model

CHAMPION = "champion"


def chat_model_folder(recipe) -> tuple[Path, str]:
    """The ONNX chat model `/ask` and the answer evaluation use, and what identifies it. `registry:NAME` is
    that model's champion deployable form; anything else is a model source exported once and cached."""
    from llmpath.causal import export_causal_onnx

    source = recipe.ask.chat_model
    if source.startswith("registry:"):
        return _registry_chat_model(source)
    resolved = resolve_model(source)
    slug = "".join(c if c.isalnum() or c in "-._" else "-" for c in resolved.revision)
    out = settings.cache_dir() / "onnx-chat" / slug
    if not (out / "model.onnx").exists():
        print(f"exporting {source} to ONNX once (cached in {out})")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        export_causal_onnx(resolved.path, partial)
        partial.rename(out)
    return out, resolved.revision


def _registry_chat_model(source: str) -> tuple[Path, str]:
    import mlflow
    from mlflow.exceptions import MlflowException

    name = source.removeprefix("registry:")
    tracking.configure()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        raise LookupError(
            f"ask.chat_model {source}: {name} has no champion; run its chat recipe first"
        ) from None
    tags = version.tags
    if "deployable.uri" not in tags:
        raise LookupError(f"ask.chat_model {source}: v{version.version} has no deployable chat form")
    folder = tracking.download(tags["deployable.uri"])
    config = folder / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    if not any(
        str(a).endswith("ForCausalLM") for a in architectures
    ):  # an index, a classifier: not a chat model
        raise LookupError(f"ask.chat_model {source}: v{version.version} is not a causal LM (no chat form)")
    return folder, f"{name} v{version.version} ({tags['deployable.form']})"


def import_index(recipe, labels: dict[str, str], tags: dict[str, str]) -> dict:
    """The champion's index, embedder and the chat model into the BentoML store, for the rag Bento. A Milvus
    Lite collection is copied into a .db of the Bento's own (the flow keeps writing its file; a server
    collection is served where it is). Returns what bento_config.json needs."""
    import bentoml

    manifest = json.loads((tracking.download(tags["deployable.uri"]) / "manifest.json").read_text())
    server = vectors.is_server(tags.get("milvus_uri", ""))
    source_uri = tags["milvus_uri"]  # where the champion's collection was built (a Lite file or a server)
    metadata = {"collection": manifest["collection"], "metric": manifest["metric"], "dim": manifest["dim"]}
    with bentoml.models.create(f"{recipe.serve.bento_name}-index", labels=labels, metadata=metadata) as model:
        folder = Path(model.path)
        if not server:
            with vectors.connect(source_uri) as src, vectors.connect(str(folder / "milvus.db")) as dst:
                copied = vectors.copy_collection(src, dst, manifest["collection"])
            print(f"copied {copied} chunks of {manifest['collection']} into the Bento's own Milvus Lite file")
        _copy_embedder(recipe, manifest, tags, folder / "embedder")
        (folder / "manifest.json").write_text(
            json.dumps(manifest | {"uri": source_uri if server else "milvus.db"}, indent=2)
        )
    chat_folder, chat_revision = chat_model_folder(recipe)
    chat_labels = labels | {"chat_model": chat_revision[:60]}
    with bentoml.models.create(f"{recipe.serve.bento_name}-chat", labels=chat_labels) as chat:
        shutil.copytree(chat_folder, chat.path, dirs_exist_ok=True)
    return {
        "index_model_tag": str(model.tag),
        "chat_model_tag": str(chat.tag),
        "search_params": manifest["search_params"],
        "embed_max_length": manifest["max_length"],
        # A PyTorch embedder needs torch where the Bento is containerized; the ONNX one does not.
        "extra_packages": ["torch"] if manifest["embedder_backend"] == "torch" else [],
    }


def _copy_embedder(recipe, manifest: dict, tags: dict[str, str], out: Path) -> None:
    """The embedder the index was built with: its checked ONNX export, or the base model's weights (refused
    when the base has moved on since the build)."""
    if manifest["embedder_backend"] == "onnx":
        shutil.copytree(tracking.download(tags["embedder_uri"]), out)
        return
    base = resolve_model(recipe.model.base, recipe.model.revision)
    if base.revision != manifest["embedder_revision"]:
        raise LookupError(
            f"the index was built with {manifest['embedder_revision']} but {recipe.model.base} is now "
            f"{base.revision}: rebuild the index"
        )
    shutil.copytree(base.path, out, ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.h5"))
