"""Stages `export` and `parity`: the deployable forms of a model version, made and checked by the family of
the recipe's kind (sequence classifier: ONNX fp32 + int8; causal LM: ONNX with KV cache + quantized forms),
and the gate that picks the form that ships."""

from __future__ import annotations

from llmpath.recipes import Recipe, kind_of
from llmpath.results import Evaluation, ExportedModel, ParityError, ParityResult, PreparedData, TrainedModel
from tasks.stages import kind_version, stage

__all__ = ["ParityError", "export", "parity"]


def export_version(recipe: Recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
    """Export the merged model to its family's deployable forms, as artifacts of this run."""
    return kind_of(recipe).family.export(recipe, trained, run_id)


def check_parity(
    recipe: Recipe, data: PreparedData, exported: ExportedModel, candidate: Evaluation, run_id: str
) -> ParityResult:
    """Check every exported form against the PyTorch candidate; mark the one that ships."""
    return kind_of(recipe).family.parity(recipe, data, exported, candidate, run_id)


def export_key(recipe: Recipe, trained: TrainedModel, **_) -> dict:
    return {"kind": recipe.kind, "model": trained.model_uri} | kind_of(recipe).family.export_key(recipe)


def parity_key(
    recipe: Recipe, data: PreparedData, exported: ExportedModel, candidate: Evaluation, **_
) -> dict:
    return {
        "data": data.fingerprint,
        "kind": recipe.kind,
        "forms": [exported.fp32_uri, exported.int8_uri, exported.quantized],
        "reference": candidate.predictions_uri,
    } | kind_of(recipe).family.parity_key(recipe)


export = stage(export_version, name="export", key=export_key, version=kind_version)
parity = stage(check_parity, name="parity", key=parity_key, version=kind_version)
