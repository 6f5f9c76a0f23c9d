"""The pretrain recipe: a small GPT-style decoder (Llama architecture) trained from a random init on local text,
with a byte-level BPE tokenizer trained on the same training documents; gated on held-out perplexity."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmpath.config import EvalConfig, ModelConfig, RecipeBase, Section, TrainConfig
from llmpath.families.causal_lm.config import CausalExport, CausalServe


class TextSource(Section):
    """One file of documents under the data root (or absolute)."""

    path: str = Field(description="The file, under LLMPATH_DATA_DIR unless absolute.")
    format: Literal["jsonl", "json", "squad"] = Field(
        description="jsonl: one JSON object a line; json: a JSON array of objects; squad: SQuAD JSON (each "
        "paragraph's `context` is a document)."
    )
    fields: list[str] = Field(
        default_factory=lambda: ["text"],
        min_length=1,
        description="String fields of a row joined by newlines into one document (empty ones skipped); "
        "e.g. [instruction, input, output] for Alpaca. Not used by `squad`.",
    )


class PretrainData(Section):
    """The documents, and the seeded share held out (by document) from tokenizer and model training."""

    sources: list[TextSource] = Field(min_length=1, description="The files whose documents make the corpus.")
    heldout_fraction: float = Field(
        0.05, gt=0, lt=1, description="Share of documents held out for perplexity; never trained on."
    )
    seed: int = Field(42, description="Seed of the held-out draw.")
    min_chars: int = Field(1, ge=1, description="Documents shorter than this (in characters) are dropped.")
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="Invalid rows of a file above this share fail the run; below, dropped."
    )


class PretrainTokenizer(Section):
    """The byte-level BPE tokenizer trained on the training documents (Hugging Face `tokenizers`)."""

    vocab_size: int = Field(
        2000, ge=300, le=65536, description="Vocabulary size, 256 byte tokens and 3 special tokens included."
    )
    min_frequency: int = Field(2, ge=1, description="A merge must occur this often in the training text.")


class PretrainModel(ModelConfig):
    """The decoder's shape (a LlamaConfig); weights start random, seeded by train.seed."""

    base: Literal["scratch"] = Field("scratch", description="Always `scratch`: no pretrained weights.")
    max_length: int = Field(
        128, ge=8, le=4096, description="Context length: tokens per packed block and the model's positions."
    )
    hidden_size: int = Field(64, ge=8, description="Width of the residual stream.")
    layers: int = Field(2, ge=1, description="Decoder layers.")
    heads: int = Field(4, ge=1, description="Attention heads (hidden_size must divide by it).")
    kv_heads: int | None = Field(None, ge=1, description="Key/value heads (grouped-query); default: heads.")
    intermediate_size: int | None = Field(
        None, ge=8, description="Width of the MLP; default: 4 x hidden_size."
    )
    init_std: float = Field(0.02, gt=0, le=1, description="Standard deviation of the random init.")

    @model_validator(mode="after")
    def _shape(self) -> PretrainModel:
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError(
                f"model.hidden_size {self.hidden_size} must be model.heads {self.heads} x an even head size"
            )
        if self.heads % (self.kv_heads or self.heads):
            raise ValueError(f"model.heads {self.heads} must be a multiple of model.kv_heads {self.kv_heads}")
        return self


class PretrainTrain(TrainConfig):
    """Optimisation settings. steps = ceil(blocks / batch_size) * epochs, unless max_steps caps it."""

    batch_size: int = Field(16, gt=0, description="Packed blocks per optimizer step.")
    learning_rate: float = Field(3e-3, gt=0, description="AdamW peak learning rate.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming up.")
    group_by_length: bool = Field(False, description="Blocks are all one length but the last: no grouping.")


DEFAULT_PROMPTS = ["The", "Once upon a time", "Give three tips for", "The Super Bowl"]


class PretrainEval(EvalConfig):
    """Held-out perplexity (base = the random init, candidate) beside a unigram baseline; samples from fixed
    prompts. The gate compares neg_perplexity (higher is better: lower perplexity)."""

    metric: Literal["neg_perplexity"] = Field("neg_perplexity", description="The metric the gate compares.")
    batch_size: int = Field(16, gt=0, description="Blocks per forward pass for the held-out loss.")
    prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS),
        min_length=1,
        description="Fixed prompts continued greedily (the samples table and the parity probes).",
    )
    max_new_tokens: int = Field(32, gt=0, le=1024, description="Length cap of each sample.")


class PretrainRecipe(RecipeBase):
    """A pretrain run: documents -> BPE tokenizer -> GPT from scratch -> perplexity gate -> ONNX -> chat Bento."""

    kind: Literal["pretrain"] = Field("pretrain", description="Always `pretrain` for this recipe.")
    data: PretrainData = Field(description="The documents and the held-out share.")
    tokenizer: PretrainTokenizer = PretrainTokenizer()
    model: PretrainModel = PretrainModel()
    train: PretrainTrain = PretrainTrain()
    eval: PretrainEval = PretrainEval()
    export: CausalExport = CausalExport()
    serve: CausalServe = CausalServe()

    @property
    def uses_hub(self) -> bool:
        return False  # local files and a model from scratch: never the hub
