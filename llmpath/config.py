"""The recipe: one frozen, validated config object with a section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    # NaN and infinity pass `gt=0` checks in spirit only: a NaN learning rate trains nothing, silently.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    labels: list[str] | None = Field(
        None, min_length=2, description="classify: class names; raw labels are an index or a name."
    )
    chat_format: Literal["auto", "alpaca", "messages", "sharegpt"] = Field(
        "auto", description="chat: row form; auto picks by the columns a row has."
    )
    columns: dict[Literal["instruction", "input", "output", "system", "messages", "conversations"], str] = (
        Field(
            default_factory=dict, description="chat: column names when they differ, e.g. {output: response}."
        )
    )
    overflow: Literal["truncate", "drop"] = Field(
        "truncate", description="chat: conversations over model.max_length tokens are cut or dropped."
    )
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
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="chat: load the frozen base in 4-bit (nf4) or 8-bit with bitsandbytes (QLoRA)."
    )


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

    metric: Literal["accuracy", "macro_f1", "rouge_l", "recall_at_5"] = Field(
        "accuracy",
        description="Higher is better. classify: accuracy or macro_f1; chat: rouge_l; rag: recall_at_5.",
    )
    floor: float = Field(
        0.0, ge=0, le=1, description="rag: recall@5 an index needs before `champion` may point at it."
    )
    min_improvement: float = Field(0.0, ge=0, description="Candidate must beat base and champion by this.")
    batch_size: int = Field(64, gt=0)
    max_prompts: int = Field(32, gt=0, description="chat: validation prompts answered greedily for ROUGE-L.")
    max_new_tokens: int = Field(64, gt=0, le=1024, description="chat: answer length cap for ROUGE-L.")


class ExportConfig(Section):
    """ONNX export, int8 quantization and the parity gate that decides what ships."""

    quantize: bool = True
    per_channel: bool = True
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="int8 vs PyTorch accuracy, absolute.")
    min_agreement: float = Field(
        0.97,
        ge=0,
        le=1,
        description="classify: share of rows where int8 and PyTorch agree. chat: top-1 agreement of each "
        "quantized form with PyTorch's greedy tokens (teacher-forced) on the probe prompts.",
    )
    quantized_forms: list[Literal["int8-weight", "int4-weight", "int8-dynamic"]] = Field(
        default_factory=lambda: ["int8-weight", "int4-weight"],
        description="chat: quantized ONNX forms to try. *-weight: MatMulNBits weight-only, fp32 compute, "
        "lm_head kept fp32; int8-dynamic: dynamic int8 MatMul, per-channel.",
    )
    block_size: int = Field(32, ge=16, description="chat: weight-only quantization block (power of two).")
    probe_prompts: int = Field(16, gt=0, description="chat: prompts of the parity probe set.")
    prefer: Literal["speed", "size"] = Field(
        "speed", description="chat: among forms that pass parity, ship the fastest or the smallest."
    )

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"must be a power of two (16, 32, 64, 128), not {value}")
        return value


class ServeConfig(Section):
    """The BentoML service built from the champion."""

    bento_name: str = Field("llmpath-classifier", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_texts: int = Field(64, gt=0)
    max_chars: int = Field(2000, gt=0)
    max_batch_size: int = Field(32, gt=0)
    max_latency_ms: int = Field(
        10000,
        gt=0,
        description="classify: BentoML's batcher answers 503 to a request it expects to wait longer than this. "
        "It is a shedding threshold, not a batching delay: at 1000 a busy 2-core host shed 1% at concurrency 16.",
    )
    max_input_tokens: int = Field(1024, gt=0, description="chat: longer conversations get a 400.")
    max_new_tokens: int = Field(256, gt=0, description="chat: the cap on a request's max_tokens.")
    max_body_bytes: int = Field(
        1 << 20, gt=0, description="Larger request bodies get a 413 (bentos/guard.py)."
    )
    body_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A request body that takes longer to arrive gets a 408."
    )


class CorpusSource(Section):
    """One corpus source: SQuAD JSON, a folder of Markdown/text files, or JSONL with a text field."""

    path: str = Field(description="File or folder under the data root (or absolute).")
    format: Literal["auto", "squad", "folder", "jsonl"] = Field(
        "auto", description="auto: a folder, *.jsonl, or SQuAD-format *.json."
    )
    text_field: str = Field("text", description="jsonl: the field holding the text.")
    id_field: str | None = Field(None, description="jsonl: a field naming each document (default: row).")
    questions: bool = Field(True, description="squad: its questions become the evaluation set.")
    max_documents: int | None = Field(None, gt=0, description="Keep the first N documents.")


class CorpusConfig(Section):
    """rag: what gets indexed and how it is cut into chunks."""

    sources: list[CorpusSource] = Field(min_length=1)
    chunking: Literal["paragraph", "tokens"] = Field(
        "paragraph",
        description="paragraph: one chunk per paragraph (longer ones are cut into token windows); "
        "tokens: windows of chunk_tokens with chunk_overlap over each document.",
    )
    chunk_tokens: int = Field(256, ge=16, le=512, description="Window size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive windows.")
    min_chars: int = Field(20, ge=1, description="Shorter chunks are dropped (headings, blank lines).")
    max_questions: int | None = Field(None, gt=0, description="Evaluate on the first N questions.")
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="Unusable documents above this share fail the run; below, skipped."
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> CorpusConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"corpus.chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens ({self.chunk_tokens})"
            )
        return self


class IndexConfig(Section):
    """rag: the embedder's batches and the Milvus collection each build writes."""

    uri: str | None = Field(
        None,
        description="Milvus server URI (http://host:19530). Default: a Milvus Lite file, "
        "`LLMPATH_MILVUS_URI` or <LLMPATH_HOME>/milvus/llmpath.db.",
    )
    type: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] = "HNSW"
    metric: Literal["COSINE", "IP", "L2"] = "COSINE"
    params: dict[str, int] = Field(
        default_factory=dict,
        description="Build parameters, e.g. {M: 16, efConstruction: 200} or {nlist: 64}.",
    )
    search_params: dict[str, int] = Field(
        default_factory=dict, description="Search parameters, e.g. {ef: 64} or {nprobe: 16}."
    )
    embed_batch_size: int = Field(64, gt=0)
    write_batch_size: int = Field(256, gt=0, description="Rows per upsert.")
    onnx: bool = Field(False, description="Embed through the ONNX export (checked against PyTorch first).")
    min_cosine: float = Field(0.99, gt=0, le=1, description="ONNX vs PyTorch cosine every text must reach.")


class AskConfig(Section):
    """rag: answering with retrieved passages and the chat model (evaluation and `/ask`)."""

    chat_model: str = Field(
        "packaged:smollm2-135m-instruct",
        description="`registry:NAME` (that chat model's champion ONNX form), `packaged:NAME` or a local "
        "folder (exported to ONNX once and cached).",
    )
    prompt_template: str = Field(
        "Answer the question with a short phrase taken from the context.\n\nContext:\n{context}\n\n"
        "Question: {question}",
        description="The user message; {context} gets the numbered passages, {question} the question.",
    )
    closed_book_template: str = Field(
        "Answer the question with a short phrase.\n\nQuestion: {question}",
        description="The same question without retrieval, for the closed-book comparison.",
    )
    k: int = Field(3, gt=0, le=20, description="Passages put into the prompt.")
    sample: int = Field(16, ge=0, description="Questions answered in evaluation (0 skips it).")
    max_new_tokens: int = Field(32, gt=0, le=512)

    @field_validator("prompt_template")
    @classmethod
    def _has_fields(cls, value: str) -> str:
        missing = [f for f in ("{context}", "{question}") if f not in value]
        if missing:
            raise ValueError(f"must contain {' and '.join(missing)}")
        return value


class RoutingConfig(Section):
    """Which Prefect work pool runs which stage when the pipeline runs under a deployment. A stage not listed
    runs in the flow's own process. With no live worker on its pool, a GPU-preferring stage runs on CPU."""

    pools: dict[str, str] = Field(
        default_factory=lambda: {"finetune": "gpu-pool"}, description="stage name -> work pool name"
    )


CHAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"max_length": 512},
    "lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "dropout": 0.05},
    "train": {"batch_size": 4, "learning_rate": 2e-4, "group_by_length": True},
    "eval": {"metric": "rouge_l", "batch_size": 8},
    "export": {"min_agreement": 0.95},
    "serve": {"bento_name": "llmpath-chat", "max_chars": 8000},
}
RAG_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"base": "packaged:all-minilm-l6-v2", "max_length": 256},
    "eval": {"metric": "recall_at_5", "floor": 0.5},
    "serve": {"bento_name": "llmpath-rag", "max_chars": 2000, "max_input_tokens": 1536},
    "routing": {"pools": {}},
}
DEFAULTS = {"chat": CHAT_DEFAULTS, "rag": RAG_DEFAULTS}


class Recipe(Section):
    """A whole run: which flow, which model name in the registry, and one section per stage."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["classify", "chat", "rag"] = "classify"
    registered_model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    experiment: str | None = Field(None, description="MLflow experiment; default: the recipe name.")
    data: DataConfig | None = Field(None, description="classify and chat: the training data.")
    model: ModelConfig = Field(description="The base model (rag: the embedder).")
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    serve: ServeConfig = ServeConfig()
    routing: RoutingConfig = RoutingConfig()
    corpus: CorpusConfig | None = Field(None, description="rag: the documents to index.")
    index: IndexConfig = IndexConfig()
    ask: AskConfig = AskConfig()

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_kind(cls, raw: Any) -> Any:
        """A chat or rag recipe starts from its kind's defaults (gate metric, LoRA targets, parity floor,
        embedder, Bento name); whatever the recipe says still wins."""
        if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) or raw["kind"] not in DEFAULTS:
            return raw
        raw = dict(raw)
        for section, defaults in DEFAULTS[raw["kind"]].items():
            given = raw.get(section)
            if given is None or isinstance(given, dict):
                raw[section] = defaults | (given or {})
        return raw

    @model_validator(mode="after")
    def _hub_sources_are_explicit(self) -> Recipe:
        if self.model.revision and not self.model.base.startswith("hub:"):
            raise ValueError("model.revision applies only to `hub:` sources")
        return self

    @model_validator(mode="after")
    def _sections_fit_the_kind(self) -> Recipe:
        if self.kind == "rag":
            if self.corpus is None:
                raise ValueError("corpus: a rag recipe names its sources, e.g. [{path: squad/dev.json}]")
            if self.data is not None:
                raise ValueError("data: a rag recipe indexes `corpus` (remove the data section)")
            if self.eval.metric != "recall_at_5":
                raise ValueError("eval.metric: a rag recipe is gated on recall_at_5")
            return self
        if self.corpus is not None:
            raise ValueError(f"corpus: only rag recipes index a corpus, not {self.kind}")
        if self.data is None:
            raise ValueError(f"data: a {self.kind} recipe needs a data section (data.train at least)")
        if self.eval.metric == "recall_at_5":
            raise ValueError("eval.metric: recall_at_5 is for rag recipes")
        if self.kind == "classify":
            if not self.data.labels:
                raise ValueError(
                    "data.labels: a classify recipe names its classes, e.g. [negative, positive]"
                )
            if self.eval.metric == "rouge_l":
                raise ValueError("eval.metric: rouge_l is for chat recipes; use accuracy or macro_f1")
            if self.lora.quantization != "none":
                raise ValueError("lora.quantization: QLoRA is for chat recipes")
        else:
            if self.data.labels:
                raise ValueError("data.labels: a chat recipe has no classes (remove the key)")
            if self.eval.metric != "rouge_l":
                raise ValueError("eval.metric: a chat recipe is gated on rouge_l")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def uses_hub(self) -> bool:
        return bool(self.data and self.data.hub) or self.model.base.startswith("hub:")


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


def _format_errors(source: str, err: ValidationError) -> str:
    """One line: every wrong key and what is wrong with it. pydantic's own rendering quotes the input value,
    which may be anything the recipe's author pasted: it is left out."""
    problems = []
    for e in err.errors(include_url=False, include_input=False, include_context=False):
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key (a typo? every key is described in llmpath/config.py)")
        elif e["type"] == "missing":
            problems.append(f"{key}: missing (required)")
        elif not e["loc"]:  # a check across sections: its message names the key
            problems.append(msg)
        else:
            problems.append(f"{key}: {msg}")
    more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
    return f"{source}: invalid recipe: " + "; ".join(problems[:8]) + more


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_errors(source, err)) from None
    except RecursionError:
        raise RecipeError(f"{source}: invalid recipe: nested too deeply") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, apply `--set` overrides and validate it."""
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
    return parse_recipe(apply_overrides(raw, overrides or []), str(path))
