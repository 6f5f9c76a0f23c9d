"""The recipe: one frozen, validated config object with a section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    """Where the data comes from and how its columns map to text and label."""

    train: str = Field(
        description="Training file under the data root (or absolute), or a split name with `hub`."
    )
    validation: str | None = Field(None, description="Validation file/split; if absent, split from train.")
    hub: str | None = Field(None, description="Hugging Face dataset id; only then is the hub contacted.")
    format: Literal["auto", "tsv", "csv", "json", "jsonl", "parquet"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] = Field(min_length=2, description="Class names; raw labels are an index or a name.")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Used only when `validation` is absent.")
    max_train_rows: int | None = Field(None, gt=0, description="Seeded sample of the training split.")
    max_validation_rows: int | None = Field(None, gt=0)
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="Invalid rows above this share fail the run; below, they are dropped."
    )
    drop_duplicates: bool = True
    seed: int = 42


class ModelConfig(Section):
    """The base model and how inputs are tokenized."""

    base: str = Field(description="`packaged:NAME`, a local folder, or `hub:ORG/NAME`.")
    revision: str | None = Field(None, description="Hub revision (only for `hub:` sources).")
    max_length: int = Field(128, gt=0, le=4096)


class LoraConfig(Section):
    """PEFT LoRA adapter settings."""

    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class TrainConfig(Section):
    """Optimisation settings. steps = ceil(rows / batch_size) * epochs, unless max_steps caps it."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    group_by_length: bool = Field(True, description="Batch texts of similar length together (less padding).")
    log_every: int = Field(10, gt=0, description="Steps between writes of the per-step loss to MLflow.")
    checkpoint_every: int = Field(
        200, gt=0, description="Steps between checkpoints; a killed run resumes from the last one."
    )
    threads: int | None = Field(None, gt=0, description="torch threads; default: all cores.")
    seed: int = 42


class EvalConfig(Section):
    """Evaluation and the promotion gate."""

    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    min_improvement: float = Field(0.0, ge=0, description="Candidate must beat base and champion by this.")
    batch_size: int = Field(64, gt=0)


class ExportConfig(Section):
    """ONNX export, int8 quantization and the parity gate that decides what ships."""

    quantize: bool = True
    per_channel: bool = True
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="int8 vs PyTorch accuracy, absolute.")
    min_agreement: float = Field(0.97, ge=0, le=1, description="Share of rows where int8 and PyTorch agree.")


class ServeConfig(Section):
    """The BentoML service built from the champion."""

    bento_name: str = Field("llmpath-classifier", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_texts: int = Field(64, gt=0)
    max_chars: int = Field(2000, gt=0)
    max_batch_size: int = Field(32, gt=0)
    max_latency_ms: int = Field(1000, gt=0)


class RoutingConfig(Section):
    """Which Prefect work pool runs which stage when the pipeline runs under a deployment. A stage not listed
    runs in the flow's own process. With no live worker on its pool, a GPU-preferring stage runs on CPU."""

    pools: dict[str, str] = Field(
        default_factory=lambda: {"finetune": "gpu-pool"}, description="stage name -> work pool name"
    )


class Recipe(Section):
    """A whole run: which flow, which model name in the registry, and one section per stage."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["classify"] = "classify"
    registered_model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    experiment: str | None = Field(None, description="MLflow experiment; default: the recipe name.")
    data: DataConfig
    model: ModelConfig
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    serve: ServeConfig = ServeConfig()
    routing: RoutingConfig = RoutingConfig()

    @model_validator(mode="after")
    def _hub_sources_are_explicit(self) -> Recipe:
        if self.model.revision and not self.model.base.startswith("hub:"):
            raise ValueError("model.revision applies only to `hub:` sources")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def uses_hub(self) -> bool:
        return bool(self.data.hub) or self.model.base.startswith("hub:")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML) to a raw recipe dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE, for example train.epochs=2")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid recipe"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_errors(source, err)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, apply `--set` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of sections")
    return parse_recipe(apply_overrides(raw, overrides or []), str(path))
