"""The preference-tuning smoke recipe through the whole `dpo` flow with the packaged SmolLM2 on LLaMA-Factory's
DPO demo pairs (TRL's loss, held-out preference accuracy and reward margin for base and candidate, ONNX parity),
then its Bento answering the `openai` client over real HTTP when the gate promoted it."""

from __future__ import annotations

import pytest

from flows.dpo import dpo
from tests.conftest import serving, smoke_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline(shared_data, prefect_harness, tmp_path_factory):
    with smoke_run(dpo, "dpo-smollm2-smoke.yaml", tmp_path_factory) as run:
        yield run


def test_smoke_flow_trains_with_trls_loss_and_scores_held_out_pairs(pipeline):
    import mlflow

    recipe, summary, seconds = pipeline
    client = mlflow.MlflowClient()
    run = client.get_run(summary["mlflow run"])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    # 40 pairs sampled, those whose prompt fills the 256-token window alone dropped (the data report counts them)
    assert 10 < m["data.train_rows"] <= recipe.data.max_train_rows
    assert m["eval.heldout_pairs"] >= 20
    losses = [p.value for p in client.get_metric_history(run.info.run_id, "train_loss")]
    assert losses[0] == pytest.approx(0.6931, abs=0.01)  # log 2: the policy starts as its reference
    for name in ("base", "candidate"):
        assert 0 <= m[f"{name}.preference_accuracy"] <= 1
    assert m["base.reward_margin"] == 0  # the base is its own reference
    # a few small steps move the policy towards the chosen answers, measured against the base
    assert m["candidate.reward_margin"] > 0 and m["candidate.reward_accuracy"] > 0.5, m
    assert m["parity.fp32.top1_agreement"] >= recipe.export.min_agreement
    approved = summary.get("champion") == summary["candidate"]
    assert approved == (m["candidate.preference_accuracy"] > m["base.preference_accuracy"])  # the gate
    print(
        f"dpo smoke flow: {seconds:.0f}s, preference accuracy {m['base.preference_accuracy']:.3f} -> "
        f"{m['candidate.preference_accuracy']:.3f}, reward margin {m['candidate.reward_margin']:.3f}, "
        f"champion {summary.get('champion')}"
    )


def test_the_packaged_candidate_answers_the_openai_client(pipeline, tmp_path_factory):
    """The smoke candidate packaged by version (`build_bento(recipe, version)`, whatever the gate said) in the
    chat family's OpenAI-style Bento, served as any Bento: JSON and stream give the same greedy answer."""
    import sys
    from pathlib import Path

    from openai import OpenAI

    from tasks.package import build_bento

    recipe, summary, _ = pipeline
    bento = build_bento(recipe, summary["candidate"]).tag
    log = tmp_path_factory.mktemp("dpo-serve") / "serve.log"
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    with serving([bentoml, "serve", bento, "--host", "127.0.0.1"], log, timeout=120) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="local", max_retries=0)
        request = {
            "model": "llmpath-chat",
            "messages": [{"role": "user", "content": "Name a primary colour."}],
            "max_tokens": 8,
            "temperature": 0,
        }
        reply = client.chat.completions.create(**request)
        text = reply.choices[0].message.content
        assert text and 0 < reply.usage.completion_tokens <= 8
        assert reply.choices[0].finish_reason in {"stop", "length"}
        chunks = client.chat.completions.create(**request, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
