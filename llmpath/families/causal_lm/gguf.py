"""GGUF forms of a causal LM (llama.cpp, Ollama, LM Studio): the merged safetensors model written with the `gguf`
package as f16 or q8_0, tokenizer and chat template included, and each file loaded back (transformers reads GGUF)
to check that it predicts PyTorch's greedy tokens.

Only the Llama architecture (SmolLM2 and every `LlamaForCausalLM`) is written; anything else is refused with the
reason. llama.cpp computes rotary embeddings on interleaved pairs, Hugging Face on halves: the q and k projections'
rows are reordered here (transformers undoes it when it reads the file back, which the parity check exercises).
"""

from __future__ import annotations

import json
from pathlib import Path

FORMS = ("f16", "q8_0")


class GGUFError(ValueError):
    """The model cannot be written as GGUF, or a written file fails its check."""


def _pair_rows(weight, heads: int):
    """Hugging Face's rotary layout (each head's first half, then its second) to llama.cpp's (pairs side by side)."""
    rows, cols = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)


def pre_tokenizer_name(tokenizer) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (it splits text by this before BPE)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    parts = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"]:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    raise GGUFError(
        f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) has no llama.cpp equivalent "
        "known here: llama.cpp would split text differently from the model's training"
    )


def _vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    import gguf

    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    if len(by_id) > vocab_size:
        raise GGUFError(f"the tokenizer has {len(by_id)} tokens but the model's embedding only {vocab_size}")
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            special = i in added and added[i].special
            types.append(
                gguf.TokenType.CONTROL
                if special
                else gguf.TokenType.USER_DEFINED
                if i in added
                else gguf.TokenType.NORMAL
            )
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise GGUFError(f"only byte-level BPE tokenizers are written (this one is {model.get('type')})")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def write_gguf(model_dir: Path, out: Path, form: str, name: str) -> Path:
    """Write the Llama model in `model_dir` (safetensors + tokenizer) as one GGUF file of `form` at `out`."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if form not in FORMS:
        raise GGUFError(f"unknown GGUF form {form!r}: choose from {', '.join(FORMS)}")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    if config.model_type != "llama":
        raise GGUFError(f"GGUF export writes Llama-architecture models; this one is {config.model_type!r}")
    if getattr(config, "rope_scaling", None):
        raise GGUFError(
            "rope scaling is not written to GGUF here: the file would decode long contexts wrongly"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, trust_remote_code=False)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    qtype = gguf.GGMLQuantizationType.F16 if form == "f16" else gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]

    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if form == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)

    tokens, types, merges = _vocabulary(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for token, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id)):
        value = getattr(tokenizer, f"{token}_token_id")
        if value is not None:
            add(value)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(bool(tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue  # recomputed from the config; a tied head is the embedding (llama.cpp reuses it)
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFError(f"no GGUF name for the model's tensor {hf_name!r}")
        data = tensor.detach().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _pair_rows(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _pair_rows(data, kv_heads)
        if data.ndim == 1:  # norms stay fp32 in every form, as llama.cpp expects
            writer.add_tensor(gguf_name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % block == 0:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:  # f16, or rows that do not split into q8_0 blocks
            writer.add_tensor(gguf_name, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def modelfile(gguf_name: str, chat_template: str | None, eos: str | None) -> str:
    """An Ollama Modelfile beside the GGUF file: `ollama create NAME -f Modelfile`."""
    lines = [f"FROM ./{gguf_name}"]
    if chat_template and "<|im_start|>" in chat_template:  # ChatML, as SmolLM2's template
        lines += [  # .Messages holds the system message too
            'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}',
            "{{ .Content }}<|im_end|>",
            '{{ end }}<|im_start|>assistant\n"""',
        ]
    if eos:
        lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"


def measure_gguf(path: Path, probes: list[dict]) -> dict[str, float]:
    """Load the GGUF file back (transformers dequantizes it) and score it on the probes as the ONNX forms are:
    teacher-forced top-1 agreement with PyTorch's greedy tokens, and the share of probes on which every
    greedy token agrees."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    agree = total = identical = 0
    with torch.no_grad():
        for probe in probes:
            prompt, reference = probe["prompt_ids"], probe["answer_ids"]
            if not reference:
                identical += 1
                continue
            ids = torch.tensor([prompt + reference[:-1]])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, len(prompt) - 1 :]
            hits = logits.argmax(-1) == torch.tensor(reference)
            agree += int(hits.sum())
            total += len(reference)
            identical += bool(hits.all())
    return {
        "top1_agreement": agree / total if total else 1.0,
        "identical": identical / len(probes) if probes else 1.0,
        "size_mb": path.stat().st_size / 2**20,
    }
