"""The `gguf` flow: a registered chat model's version (its champion by default) as GGUF files for llama.cpp and
Ollama, each checked against the version's greedy tokens and attached to the version as another form."""

from __future__ import annotations

from prefect import flow

from tasks import flowrun
from tasks.gguf import FORMS
from tasks.gguf import gguf as gguf_stage


@flow(name="gguf", log_prints=True, flow_run_name=flowrun.run_name)
def gguf(
    model: str,
    version: str | None = None,
    alias: str = "champion",
    forms: list[str] = list(FORMS),  # noqa: B006 - Prefect shows the default in the run form
    min_agreement: float = 0.95,
    probes: int = 16,
) -> dict[str, dict[str, float]]:
    """Export `model` (the version given, else the one `alias` names) to GGUF `forms` (f16, q8_0). A form ships
    when its top-1 agreement with PyTorch on the candidate's recorded answers reaches `min_agreement`."""
    flowrun.begin(tags=(f"model:{model}",))
    return gguf_stage(model, version, alias, tuple(forms), min_agreement, probes)
