"""GGUF export of a causal LM: the `gguf` package writes a tiny random-init Llama (SmolLM2's tokenizer and chat
template) as f16 and q8_0; transformers reads each file back to the same weights and tokens; the `gguf` flow
under real Prefect attaches passing forms to a registered version in a real MLflow store, and fails cleanly
(run FAILED, nothing tagged, aliases untouched) when a form does not predict the version's tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpath.families.causal_lm.gguf import GGUFError, measure_gguf, modelfile, write_gguf
from tests.conftest import make_tiny_llama

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def merged(smollm2_tokenizer, tmp_path_factory) -> Path:
    """A merged chat model as the finetune stage saves it: safetensors, config, tokenizer, chat template."""
    folder = tmp_path_factory.mktemp("merged")
    make_tiny_llama(smollm2_tokenizer).save_pretrained(folder, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def greedy_probes(model_dir: Path, prompts: list[str], new_tokens: int = 6) -> list[dict]:
    """What the chat evaluation records: each prompt's ids and PyTorch's greedy answer ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpath.causal import greedy
    from llmpath.chat import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    probes = []
    for text in prompts:
        ids = prompt_ids(tokenizer, [{"role": "user", "content": text}])
        probes.append(
            {"prompt_ids": ids, "answer_ids": greedy(model, ids, new_tokens, [tokenizer.eos_token_id])}
        )
    return probes


@pytest.mark.parametrize("form, tolerance", [("f16", 2e-3), ("q8_0", 2e-2)])
def test_weights_tokens_and_metadata_read_back(merged, smollm2_tokenizer, tmp_path, form, tolerance):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = write_gguf(merged, tmp_path / f"tiny-{form}.gguf", form, "tiny")
    original = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).state_dict()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    loaded = back.state_dict()
    assert set(original) <= set(loaded)  # the tied head comes back as the embedding
    assert back.config.tie_word_embeddings
    for name, tensor in original.items():
        # q/k rows were reordered for llama.cpp's rotary layout; reading back must undo it exactly.
        scale = tensor.abs().max().item() or 1.0
        assert (loaded[name] - tensor).abs().max().item() <= tolerance * scale, name

    reader = gguf.GGUFReader(path)
    fields = {name: reader.fields[name] for name in reader.fields}

    def scalar(key):
        field = fields[key]
        return field.parts[field.data[0]].tolist()[0]

    def text(key):
        field = fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.architecture") == "llama"
    assert text("tokenizer.ggml.model") == "gpt2" and text("tokenizer.ggml.pre") == "gpt-2"
    assert scalar("tokenizer.ggml.eos_token_id") == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "<|im_start|>" in text("tokenizer.chat_template")
    assert len(fields["tokenizer.ggml.tokens"].data) == back.config.vocab_size
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"  # norms stay fp32 in every form
    assert types["blk.0.attn_q.weight"] == form.upper()
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd

    # Text tokenizes to the same ids through the file's own vocabulary and merges.
    restored = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    sample = "Héllo wörld 12345, 酒店很好 <|im_end|>"
    assert restored(sample).input_ids == smollm2_tokenizer(sample).input_ids


def test_parity_accepts_own_tokens_and_catches_wrong_ones(merged, tmp_path):
    path = write_gguf(merged, tmp_path / "tiny-f16.gguf", "f16", "tiny")
    probes = greedy_probes(merged, ["What colour is the sky?", "Name a fruit.", "Say hi."])
    own = measure_gguf(path, probes)
    assert own["top1_agreement"] == 1.0 and own["identical"] == 1.0
    assert own["size_mb"] == pytest.approx(path.stat().st_size / 2**20)
    shifted = [p | {"answer_ids": [(t + 1) % 1000 for t in p["answer_ids"]]} for p in probes]
    wrong = measure_gguf(path, shifted)
    assert wrong["top1_agreement"] < 0.2 and wrong["identical"] == 0.0


def test_refuses_what_it_cannot_write_faithfully(tiny_bert, merged, tmp_path):
    with pytest.raises(GGUFError, match="Llama-architecture"):
        write_gguf(tiny_bert, tmp_path / "bert.gguf", "f16", "bert")
    with pytest.raises(GGUFError, match="unknown GGUF form"):
        write_gguf(merged, tmp_path / "x.gguf", "q4_k", "tiny")
    text = modelfile("m.gguf", "<|im_start|>{{ messages }}", "<|im_end|>")
    assert text.startswith("FROM ./m.gguf\n") and 'PARAMETER stop "<|im_end|>"' in text
    assert (
        "{{- range .Messages }}<|im_start|>{{ .Role }}" in text and ".System" not in text
    )  # no double system
    assert "TEMPLATE" not in modelfile("m.gguf", "{{ bos_token }}[INST]", None)  # not ChatML: the file's own


def register_chat_version(name: str, merged: Path, probes: list[dict], kind: str = "chat") -> str:
    """A version laid out as the chat flow registers one: the merged model logged under the training run,
    tags run_id/model_uri, the run's `kind` param and its candidate answers at eval/candidate/answers.json."""
    import mlflow

    from llmpath import tracking

    tracking.configure()
    client = mlflow.MlflowClient()
    experiment = tracking.ensure_experiment(f"{name}-exp")
    run = client.create_run(experiment, run_name=f"{name}-train")
    run_id = run.info.run_id
    with tracking.use_run(run_id):
        mlflow.log_param("kind", kind)
        mlflow.log_artifacts(str(merged), "merged/model")
        mlflow.log_dict(probes, "eval/candidate/answers.json")
    client.set_terminated(run_id, "FINISHED")
    model_uri = f"runs:/{run_id}/merged"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, model_uri, run_id=run_id, tags={"run_id": run_id, "model_uri": model_uri}
    )
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def test_the_flow_attaches_passing_forms_and_fails_cleanly(prefect_harness, home, merged, tmp_path):
    import mlflow

    from flows.gguf import gguf

    probes = greedy_probes(merged, ["What colour is the sky?", "Name a fruit.", "Say hi.", "Count to three."])
    version = register_chat_version("tiny-chat", merged, probes)
    scores = gguf("tiny-chat", forms=["f16", "q8_0"], min_agreement=0.5)
    client = mlflow.MlflowClient()
    tags = client.get_model_version("tiny-chat", version).tags
    assert scores["f16"]["top1_agreement"] == 1.0
    for form in ("f16", "q8_0"):
        if scores[form]["top1_agreement"] < 0.5:
            assert f"gguf.{form}_uri" not in tags
            continue
        folder = Path(
            mlflow.artifacts.download_artifacts(tags[f"gguf.{form}_uri"], dst_path=str(tmp_path / form))
        )
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["Modelfile", f"tiny-chat-v{version}-{form}.gguf"]
        assert float(tags[f"gguf.{form}_mb"]) == pytest.approx(scores[form]["size_mb"], abs=0.06)
        assert (folder / "Modelfile").read_text().startswith(f"FROM ./tiny-chat-v{version}-{form}.gguf")
    run = client.get_run(tags["gguf.run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == f"gguf-tiny-chat-v{version}"
    assert run.data.metrics["gguf.f16.top1_agreement"] == 1.0
    parity = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="gguf/parity.json")
        ).read_text()
    )
    assert set(parity) == {"f16", "q8_0"}

    # A version whose recorded answers the files cannot predict: the run fails, nothing is attached and
    # the champion stays where it was.
    wrong = [p | {"answer_ids": [(t + 7) % 1000 for t in p["answer_ids"]]} for p in probes]
    other = register_chat_version("tiny-chat-wrong", merged, wrong)
    with pytest.raises(GGUFError, match="no GGUF form reached"):
        gguf("tiny-chat-wrong", forms=["f16"])
    after = client.get_model_version("tiny-chat-wrong", other)
    assert not [k for k in after.tags if k.startswith("gguf.")]
    assert str(client.get_model_version_by_alias("tiny-chat-wrong", "champion").version) == other
    experiment = client.get_run(after.tags["run_id"]).info.experiment_id
    failed = client.search_runs([experiment], "tags.`llmpath.stage` = 'gguf'")
    assert [r.info.status for r in failed] == ["FAILED"]
    assert "no GGUF form reached" in failed[0].data.tags["llmpath.error"]

    # A classifier version is refused before any work; so is a version that does not exist.
    register_chat_version("tiny-classifier", merged, probes, kind="classify")
    with pytest.raises(GGUFError, match="causal LMs"):
        gguf("tiny-classifier")
    with pytest.raises(LookupError, match="has no version 9"):
        gguf("tiny-chat", version="9")
