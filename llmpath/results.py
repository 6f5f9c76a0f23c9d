"""Typed hand-overs between stages: references (run ids, artifact URIs) and small metrics, never objects."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_RUN_URI = re.compile(r"^runs:/([0-9a-f]+)/")


class StageResult(BaseModel):
    """`run_id` fields name the MLflow run that produced the referenced artifacts (with caching, possibly an
    earlier pipeline run than the current one)."""

    model_config = ConfigDict(frozen=True)

    def metrics_to_copy(self) -> dict[str, float]:
        """Metrics a later run logs again when it reuses this result from the cache (so runs compare in MLflow)."""
        return {}

    def source_runs(self) -> set[str]:
        """The MLflow runs holding what this result refers to (its `run_id` and every `runs:/` URI)."""
        runs = set()
        for name, value in self:
            if name == "run_id" and isinstance(value, str):
                runs.add(value)
            elif isinstance(value, str) and (match := _RUN_URI.match(value)):
                runs.add(match.group(1))
        return runs


class PreparedData(StageResult):
    run_id: str
    uri: str  # folder with train.parquet / validation.parquet
    fingerprint: str
    rows: dict[str, int]
    base_revision: str

    def metrics_to_copy(self) -> dict[str, float]:
        return {f"data.{name}_rows": float(n) for name, n in self.rows.items()}


class TrainedModel(StageResult):
    run_id: str
    model_uri: str  # merged model (safetensors + tokenizer)
    adapter_uri: str | None = None  # None: trained whole, no adapter (pretrain)
    base_revision: str
    steps: int
    final_loss: float
    seconds: float
    resumed_from_step: int = 0

    def metrics_to_copy(self) -> dict[str, float]:
        return {"train_seconds": self.seconds, "train.final_loss": self.final_loss}


class Evaluation(StageResult):
    name: str  # "base" or "candidate"
    metrics: dict[str, float]
    predictions_uri: str

    def metrics_to_copy(self) -> dict[str, float]:
        return {f"{self.name}.{k}": v for k, v in self.metrics.items()}


class Registration(StageResult):
    name: str
    version: str
    previous_candidate: str | None = None
    created: bool = True  # False when an earlier run registered this very model


class GateDecision(StageResult):
    """What the gate decided after evaluation. Nothing has moved yet: `champion` moves last (stage `promote`),
    and only if it still points at `champion_read`."""

    promote: bool
    reason: str
    model: str
    version: str  # the candidate
    champion_read: str | None  # the champion when the gate read it

    @property
    def target(self) -> str | None:
        """The version the run packages and, if the gate said so, promotes."""
        return self.version if self.promote else self.champion_read


class PromotionResult(StageResult):
    """What the `promote` stage did: `promoted` when this run moved `champion` (from `previous_champion`)."""

    promoted: bool
    reason: str
    champion_version: str | None
    previous_champion: str | None


class ExportedModel(StageResult):
    run_id: str
    fp32_uri: str
    int8_uri: str | None
    quantized: dict[str, str] = {}  # chat: quantized form name -> artifact URI


class ParityResult(StageResult):
    deployable_form: str  # classify: "int8" or "fp32"; chat: "fp32" or a quantized form ("int8-weight", ...)
    deployable_uri: str
    metrics: dict[str, float]
    reason: str

    def metrics_to_copy(self) -> dict[str, float]:
        return dict(self.metrics)


class PackagedBento(StageResult):
    tag: str
    model_tag: str
    version: str


class PreparedCorpus(StageResult):
    """rag: chunks and evaluation questions (parquet) of a corpus, cut with the embedder's tokenizer."""

    run_id: str
    uri: str  # folder with chunks.parquet, questions.parquet, report.md, row_issues.csv
    fingerprint: str  # the chunks and questions (what embedding depends on)
    corpus_fingerprint: str  # the documents alone (recorded with the collection)
    documents: int
    chunks: int
    questions: int
    base_revision: str

    def metrics_to_copy(self) -> dict[str, float]:
        return {
            "corpus.documents": self.documents,
            "corpus.chunks": self.chunks,
            "corpus.questions": self.questions,
        }


class Embeddings(StageResult):
    """rag: the vectors of every chunk and question, and the embedder that made them."""

    run_id: str
    uri: str  # folder with chunks.npy, questions.npy
    embedder: str  # recipe's model.base
    revision: str
    backend: str  # "torch" or "onnx"
    dim: int
    model_uri: str | None = None  # onnx: the exported embedder (serving uses the same one)
    metrics: dict[str, float] = {}

    def metrics_to_copy(self) -> dict[str, float]:
        return dict(self.metrics)


class IndexBuild(StageResult):
    """rag: a Milvus collection holding the corpus, and the record it carries."""

    uri: str  # Milvus Lite file or server URI
    collection: str
    rows: int
    record: dict
    created: bool
    embedder_uri: str | None = (
        None  # the ONNX embedder the vectors came from (serving embeds queries with it)
    )


class GateError(RuntimeError):
    """A quality gate said no (for example: no exported form agrees with PyTorch). Never retried."""


class ParityError(GateError):
    """No exported form agrees with the PyTorch model within the recipe's tolerance."""
