"""A tiny random-init Llama (built from a config) with SmolLM2's tokenizer and chat template: masked loss counts
assistant tokens only, LoRA learns, the merged model matches the adapter, and its ONNX export with KV cache
generates the same greedy tokens as PyTorch."""

from __future__ import annotations

import pytest

from bentos.chat.runtime import OnnxCausalLM
from llmpath.chat import IGNORE, pad_batch, prompt_ids, render

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def conversations() -> list[list[dict[str, str]]]:
    answers = {"red": "Stop.", "green": "Go.", "amber": "Slow down.", "blue": "Not a traffic light."}
    return [
        [
            {"role": "user", "content": f"The light is {colour}. What do I do?"},
            {"role": "assistant", "content": a},
        ]
        for colour, a in answers.items()
    ]


def test_masked_loss_lora_merge_and_onnx_greedy_parity(smollm2_tokenizer, tiny_llama, tmp_path):
    tokenizer = smollm2_tokenizer
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from peft import LoraConfig, get_peft_model

    items = [render(tokenizer, c, max_length=128) for c in conversations()]
    batch = pad_batch(items, tokenizer.pad_token_id)
    labelled = batch["labels"] != IGNORE
    # Only assistant tokens carry labels: 4 answers, each its words plus "<|im_end|>\n".
    assert tokenizer.decode(batch["labels"][0][labelled[0]]) == "Stop.<|im_end|>\n"
    assert not labelled[batch["attention_mask"] == 0].any()  # padding is never a target

    # The model's loss equals cross-entropy over the labelled positions alone (shifted by one).
    model = tiny_llama
    with torch.no_grad():
        out = model(**batch)
        logits, targets = out.logits[:, :-1], batch["labels"][:, 1:]
        keep = targets != IGNORE
        manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-5)

    lora = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        ),
    )
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=5e-2)
    first = None
    for _ in range(60):
        loss = lora(**batch).loss
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"masked loss {first:.3f} -> {loss.item():.3f}")
    assert loss.item() < first * 0.7  # it learns the answers

    lora.eval()
    with torch.no_grad():
        adapted = lora(**batch).logits
        merged = lora.merge_and_unload()
        assert torch.allclose(merged(**batch).logits, adapted, atol=1e-4)
    merged.save_pretrained(tmp_path / "merged", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "merged")

    ort = ORTModelForCausalLM.from_pretrained(tmp_path / "merged", export=True, use_cache=True)
    assert ort.use_cache
    ort.save_pretrained(tmp_path / "onnx")
    runtime = OnnxCausalLM(tmp_path / "onnx")  # what the chat Bento runs: onnxruntime alone
    for conversation in conversations():
        ids = torch.tensor([prompt_ids(tokenizer, conversation[:1])])
        kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
        kwargs |= dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        torch_tokens = merged.generate(ids, **kwargs)[0, ids.shape[1] :].tolist()
        onnx_tokens = ort.generate(ids, **kwargs)[0, ids.shape[1] :].tolist()
        assert onnx_tokens == torch_tokens
        streamed = list(runtime.stream(ids[0].tolist(), 12, stop_ids=[tokenizer.eos_token_id]))
        assert streamed == [t for t in torch_tokens if t != tokenizer.eos_token_id][: len(streamed)]
        assert len(streamed) == len(torch_tokens) - (torch_tokens[-1] == tokenizer.eos_token_id)
