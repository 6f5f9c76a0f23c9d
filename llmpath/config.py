"""The recipe's shared parts: the sections every kind uses (data source, base model, LoRA, training,
evaluation, serving, routing) and `RecipeBase`, which each kind's recipe class extends with its own sections
(`llmpath/kinds/<kind>/recipe.py`). The recipe a user writes is the union of those classes on `kind`
(`llmpath.recipes.Recipe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bentos.serve_config import ServeSettings


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    # NaN and infinity pass `gt=0` checks in spirit only: a NaN learning rate trains nothing, silently.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Section):
    """Where the training data comes from; each kind adds how its columns map (text and label, messages)."""

    train: str = Field(
        description="Training file under the data root (or absolute), or a split name with `hub`."
    )
    validation: str | None = Field(None, description="Validation file/split; if absent, split from train.")
    hub: str | None = Field(None, description="Hugging Face dataset id; only then is the hub contacted.")
    format: Literal["auto", "tsv", "csv", "json", "jsonl", "parquet"] = Field(
        "auto", description="File format; auto picks by the file's extension."
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Used only when `validation` is absent.")
    max_train_rows: int | None = Field(None, gt=0, description="Seeded sample of the training split.")
    max_validation_rows: int | None = Field(None, gt=0, description="Seeded sample of the validation split.")
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="Invalid rows above this share fail the run; below, they are dropped."
    )
    drop_duplicates: bool = Field(
        True, description="Drop rows repeating an earlier row (counted in the report)."
    )
    seed: int = Field(42, description="Seed of the validation split and the row samples.")


class ModelConfig(Section):
    """The base model and how inputs are tokenized."""

    base: str = Field(description="`packaged:NAME`, a local folder, or `hub:ORG/NAME`.")
    revision: str | None = Field(None, description="Hub revision (only for `hub:` sources).")
    max_length: int = Field(128, gt=0, le=4096, description="Token window: longer inputs are truncated.")


class LoraConfig(Section):
    """PEFT LoRA adapter settings."""

    enabled: bool = Field(
        True, description="Train a LoRA adapter; false: full fine-tuning (every weight trains, no adapter)."
    )
    r: int = Field(8, gt=0, description="Rank of the adapter matrices.")
    alpha: int = Field(16, gt=0, description="Scaling: the update is multiplied by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="Names of the linear layers that get adapters (e.g. query, value).",
    )


class TrainConfig(Section):
    """Optimisation settings. steps = ceil(rows / batch_size) * epochs, unless max_steps caps it."""

    epochs: float = Field(1.0, gt=0, description="Passes over the training split (fractions allowed).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    batch_size: int = Field(32, gt=0, description="Rows per optimizer step.")
    learning_rate: float = Field(
        5e-4, gt=0, description="AdamW peak learning rate (linear warmup and decay)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of the steps spent warming up.")
    group_by_length: bool = Field(True, description="Batch texts of similar length together (less padding).")
    log_every: int = Field(10, gt=0, description="Steps between writes of the per-step loss to MLflow.")
    checkpoint_every: int = Field(
        200, gt=0, description="Steps between checkpoints; a killed run resumes from the last one."
    )
    grad_accum: int = Field(
        1,
        gt=0,
        description="Split each batch into this many micro-batches whose gradients add up: the same optimizer "
        "steps and results as one pass, with a fraction of the activation memory.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="Compute precision of the forward pass (autocast; weights stay fp32). bf16 on CPU and on "
        "CUDA devices that have it; fp16 on CUDA only (with loss scaling).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about a third more time."
    )
    processes: int = Field(
        1,
        gt=0,
        le=64,
        description="Data-parallel training processes on this host (accelerate launch; gloo on CPU, NCCL on "
        "GPUs, one GPU each): each computes the gradients of its share of every batch; the same steps and "
        "checkpoints as one process.",
    )
    threads: int | None = Field(
        None, gt=0, description="torch threads per process; default: the cores shared among the processes."
    )
    seed: int = Field(42, description="Seed of the weights' initialisation and the batch order.")

    @model_validator(mode="after")
    def _micro_batches_fit(self) -> TrainConfig:
        if self.grad_accum * self.processes > self.batch_size:
            raise ValueError(
                f"a batch of {self.batch_size} rows is shared among {self.processes} process(es), each "
                f"splitting its share into {self.grad_accum} micro-batch(es): batch_size must be at least "
                "processes x grad_accum"
            )
        return self


class EvalConfig(Section):
    """Evaluation and the promotion gate; each kind names its metric (higher is better)."""

    metric: str = Field(description="The metric the gate compares.")
    min_improvement: float = Field(0.0, ge=0, description="Candidate must beat base and champion by this.")
    batch_size: int = Field(64, gt=0, description="Rows per forward pass in evaluation.")


# The serve section's base: the schema the Bentos read too (bentos/serve_config.py, the serving runtime;
# each Bento's own settings extend it in bentos/<bento>/<bento>_config.py).
ServeConfig = ServeSettings


class RoutingConfig(Section):
    """Which Prefect work pool runs which stage when the pipeline runs under a deployment. A stage not listed
    runs in the flow's own process. With no live worker on its pool, a GPU-preferring stage runs on CPU."""

    pools: dict[str, str] = Field(
        default_factory=lambda: {"finetune": "gpu-pool"}, description="stage name -> work pool name"
    )


class RecipeBase(Section):
    """A whole run: which kind, which model name in the registry, and one section per stage. Each kind's
    recipe class extends it with `kind: Literal[...]` and its own sections."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The recipe's name (the MLflow experiment's too).",
    )
    kind: str = Field(description="The recipe kind (`llmpath kinds` lists them); it decides the sections.")
    registered_model: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="MLflow registered model the run versions."
    )
    experiment: str | None = Field(None, description="MLflow experiment; default: the recipe name.")
    model: ModelConfig = Field(description="The base model.")
    serve: ServeConfig = Field(description="The Bento built from the champion.")
    routing: RoutingConfig = RoutingConfig()

    @model_validator(mode="after")
    def _hub_sources_are_explicit(self) -> RecipeBase:
        if self.model.revision and not self.model.base.startswith("hub:"):
            raise ValueError("model.revision applies only to `hub:` sources")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def uses_hub(self) -> bool:
        data = getattr(self, "data", None)
        return bool(data and data.hub) or self.model.base.startswith("hub:")


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
        node[parts[-1]] = _yaml(value, f"--set {key.strip()}")
    return raw


def _yaml(text: str, source: str) -> Any:
    from llmpath.yamlfile import YamlFileError, load_yaml

    try:
        return load_yaml(text, source)
    except YamlFileError as err:
        raise RecipeError(str(err)) from None


def field_at(model: type[BaseModel], loc: tuple) -> Any:
    """The pydantic field at a dotted location of a model class (`("data", "labels")`), or None."""
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
        if getattr(model, "__origin__", None) is not None or not isinstance(model, type):
            model = next((a for a in getattr(model, "__args__", ()) if isinstance(a, type)), model)
    return info


def _and(names: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _format_errors(
    source: str,
    err: ValidationError,
    strip: tuple[str, ...] = (),
    classes: dict[str, type[BaseModel]] | None = None,
) -> str:
    """One line: every wrong key and what is wrong with it. pydantic's own rendering quotes the input value,
    which may be anything the recipe's author pasted: it is left out. `classes`: the recipe class of each
    kind, so a key of another kind is named as such and a missing key says what it holds."""
    classes = classes or {}
    problems = []
    for e in err.errors(include_url=False, include_input=False, include_context=False):
        kind = e["loc"][0] if e["loc"] and e["loc"][0] in strip else None
        loc = e["loc"][1:] if kind else e["loc"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            others = [k for k, cls in classes.items() if k != kind and field_at(cls, tuple(loc))]
            if kind and others:
                problems.append(f"{key}: not a key of a {kind} recipe ({_and(others)} recipes have it)")
            else:
                problems.append(f"{key}: unknown key (a typo? `llmpath kinds --fields KIND` lists every key)")
        elif e["type"] == "missing":
            info = field_at(classes[kind], tuple(loc)) if kind in classes else None
            what = f": {info.description.rstrip('.')}" if info is not None and info.description else ""
            problems.append(f"{key}: missing (required{what})")
        elif e["type"] == "literal_error" and kind:
            problems.append(f"{key}: {msg} in a {kind} recipe")
        elif not loc:  # a check across sections: its message names the key
            problems.append(msg)
        else:
            problems.append(f"{key}: {msg}")
    more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
    return f"{source}: invalid recipe: " + "; ".join(problems[:8]) + more


def format_errors(source: str, err: ValidationError, classes: dict[str, type[BaseModel]]) -> str:
    """`_format_errors` for the union of recipe classes (kind -> class): pydantic puts the kind first in every
    error's location."""
    return _format_errors(source, err, tuple(classes), classes)


def read_raw_recipe(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe file as a dict, with `--set` overrides applied (not validated yet)."""
    from llmpath.yamlfile import YamlFileError, read_small_text

    path = Path(path)
    try:
        text = read_small_text(path, "recipe")
    except YamlFileError as err:
        raise RecipeError(str(err)) from None
    raw = _yaml(text, str(path))
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else f"a {type(raw).__name__}"
        raise RecipeError(
            f"{path}: a recipe is a YAML mapping of sections (name, registered_model, model, ...), not {got}"
        )
    return apply_overrides(raw, overrides or [])
