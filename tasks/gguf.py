"""Stage `gguf`: a registered causal-LM version written as GGUF files (llama.cpp, Ollama), each loaded back and
checked against the version's own greedy tokens, and attached to the version as more of its forms.

It runs in its own MLflow run (`gguf-MODEL-vN`, in the experiment of the run that trained the version), so a
failed export is a FAILED run that tags nothing. It never moves an alias.
"""

from __future__ import annotations

import json
import re
import time

from llmpath import progress, tracking
from llmpath.families.causal_lm.gguf import FORMS, GGUFError, measure_gguf, modelfile, write_gguf
from llmpath.recipes import kind_named, kinds
from tasks.stages import stage

__all__ = ["FORMS", "GGUFError", "check_exportable", "export_gguf", "gguf"]


def _client():
    import mlflow

    tracking.configure()
    return mlflow.MlflowClient()


def resolve_version(model: str, version: str | None, alias: str) -> str:
    """The version number asked for: `version` itself, or the one `alias` points at."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        if version is not None:
            return str(client.get_model_version(model, str(version)).version)
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias @{alias}"
        raise LookupError(
            f"registered model {model!r} has no {what} (list them in the MLflow UI, or `llmpath history {model}`)"
        ) from None


def _source(model: str, version: str) -> tuple[str, str, str]:
    """(model_uri, training run id, experiment id) of a causal-LM version; refuses other families."""
    client = _client()
    tags = client.get_model_version(model, version).tags
    run_id, model_uri = tags.get("run_id"), tags.get("model_uri")
    if not run_id or not model_uri:
        raise LookupError(f"{model} v{version} was not registered by llmpath (no run_id/model_uri tags)")
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise LookupError(
            f"{model} v{version}'s training run {run_id} is gone from the tracking store"
        ) from None
    kind = run.data.params.get("kind", "")
    try:
        family = kind_named(kind).family.name
    except ValueError:
        family = "unknown"
    if family != "causal-lm":
        causal = sorted(name for name, k in kinds().items() if k.family.name == "causal-lm")
        raise GGUFError(
            f"{model} v{version} is a {kind or 'unknown'}-kind model ({family} family): GGUF export is for "
            f"causal LMs ({', '.join(causal)} recipes)"
        )
    return model_uri, run_id, run.info.experiment_id


def _probes(run_id: str, limit: int) -> list[dict]:
    """The candidate's greedy answers recorded by its evaluation: the tokens every GGUF form must predict."""
    try:
        path = tracking.download(tracking.artifact_uri(run_id, "eval/candidate/answers.json"))
    except Exception:  # MLflow raises several types for a missing artifact
        raise GGUFError(
            f"run {run_id} has no eval/candidate/answers.json: the parity check needs the candidate's greedy "
            "answers (re-run the chat recipe)"
        ) from None
    probes = [p for p in json.loads(path.read_text()) if p.get("prompt_ids")][:limit]
    if not probes:
        raise GGUFError(
            f"run {run_id}'s candidate answered no prompts: nothing to check the GGUF files against"
        )
    return probes


def check_exportable(model: str, version: str | None, alias: str, forms, min_agreement: float) -> str:
    """Everything `export_gguf` checks before any work (the CLI calls it before Prefect starts): the forms, the
    floor, the version and its family. Returns the version number."""
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise GGUFError(f"GGUF forms: {', '.join(unknown) or 'none given'}; choose from {', '.join(FORMS)}")
    if not 0.0 <= min_agreement <= 1.0:
        raise GGUFError(f"min_agreement must be between 0 and 1 (got {min_agreement})")
    number = resolve_version(model, version, alias)
    _source(model, number)
    return number


def export_gguf(
    model: str,
    version: str | None = None,
    alias: str = "champion",
    forms: tuple[str, ...] = FORMS,
    min_agreement: float = 0.95,
    probes: int = 16,
) -> dict[str, dict[str, float]]:
    """Write each form, measure it, attach the passing ones to the version (`gguf.<form>_uri`, `_mb`,
    `_agreement`). Raises GGUFError (run FAILED, nothing tagged) when no form reaches `min_agreement`."""
    import mlflow

    number = check_exportable(model, version, alias, forms, min_agreement)
    model_uri, run_id, experiment_id = _source(model, number)
    reference = _probes(run_id, probes)
    client = _client()
    run = client.create_run(
        experiment_id,
        run_name=f"gguf-{model}-v{number}",
        tags={"llmpath.stage": "gguf", "llmpath.model": model, "llmpath.model_version": number},
    )
    gguf_run = run.info.run_id
    try:
        model_dir = tracking.download_model(model_uri)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        out = tracking.scratch("gguf-")
        scores: dict[str, dict[str, float]] = {}
        with tracking.use_run(gguf_run):
            mlflow.log_params(
                {"model": model, "version": number, "forms": ",".join(forms), "min_agreement": min_agreement}
            )
            for index, form in enumerate(forms):
                with progress.part(index, len(forms), form):
                    started = time.perf_counter()
                    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-v{number}-{form}")
                    path = write_gguf(model_dir, out / form / f"{stem}.gguf", form, model)
                    written = time.perf_counter() - started
                    (path.parent / "Modelfile").write_text(
                        modelfile(path.name, tokenizer.chat_template, tokenizer.eos_token)
                    )
                    scores[form] = measure_gguf(path, reference) | {"write_seconds": written}
                    print(
                        f"gguf {form}: {scores[form]['size_mb']:.0f} MB, top-1 agreement "
                        f"{scores[form]['top1_agreement']:.3f} on {len(reference)} probes"
                    )
                    mlflow.log_metrics({f"gguf.{form}.{k}": v for k, v in scores[form].items()})
            passing = [f for f in forms if scores[f]["top1_agreement"] >= min_agreement]
            mlflow.log_dict(scores, "gguf/parity.json")
            if not passing:
                raise GGUFError(
                    "no GGUF form reached top-1 agreement "
                    f"{min_agreement}: "
                    + ", ".join(f"{f} {scores[f]['top1_agreement']:.3f}" for f in forms)
                    + "; nothing attached to the version"
                )
            for form in passing:
                mlflow.log_artifacts(str(out / form), f"gguf/{form}")
        tags = {"gguf.run_id": gguf_run}
        for form in passing:
            tags |= {
                f"gguf.{form}_uri": tracking.artifact_uri(gguf_run, f"gguf/{form}"),
                f"gguf.{form}_mb": f"{scores[form]['size_mb']:.1f}",
                f"gguf.{form}_agreement": f"{scores[form]['top1_agreement']:.4f}",
            }
        for key, value in tags.items():
            client.set_model_version_tag(model, number, key, value)
        failed = [f for f in forms if f not in passing]
        if failed:
            client.set_tag(gguf_run, "gguf.below_floor", ",".join(failed))
    except BaseException as err:
        client.set_tag(gguf_run, "llmpath.error", f"{type(err).__name__}: {err}"[:4000])
        client.set_terminated(gguf_run, "FAILED")
        raise
    client.set_terminated(gguf_run, "FINISHED")
    return scores


gguf = stage(export_gguf, name="gguf", retries=0)
