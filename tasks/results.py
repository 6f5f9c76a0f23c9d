"""Typed hand-overs between stages: references (run ids, artifact URIs) and small metrics, never objects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageResult(BaseModel):
    model_config = ConfigDict(frozen=True)


class PreparedData(StageResult):
    run_id: str
    uri: str  # folder with train.parquet / validation.parquet
    fingerprint: str
    rows: dict[str, int]


class TrainedModel(StageResult):
    run_id: str
    model_uri: str  # merged model (safetensors + tokenizer)
    adapter_uri: str
    base_revision: str
    steps: int
    final_loss: float
    seconds: float


class Evaluation(StageResult):
    name: str  # "base" or "candidate"
    metrics: dict[str, float]
    predictions_uri: str


class Registration(StageResult):
    name: str
    version: str
    previous_candidate: str | None = None


class PromotionResult(StageResult):
    promoted: bool
    reason: str
    champion_version: str | None
    previous_champion: str | None


class ExportedModel(StageResult):
    version: str
    fp32_uri: str
    int8_uri: str | None


class ParityResult(StageResult):
    deployable_form: str  # "int8" or "fp32"
    deployable_uri: str
    metrics: dict[str, float]
    reason: str


class PackagedBento(StageResult):
    tag: str
    model_tag: str
    version: str
