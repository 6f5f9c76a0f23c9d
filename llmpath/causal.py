"""Decoder LMs in PyTorch for the chat recipe: load (optionally 4-/8-bit with bitsandbytes), wrap in LoRA,
merge, score with the assistant-only loss, answer greedily; and their ONNX forms (fp32 export with KV cache,
weight-only and dynamic quantization)."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from llmpath.chat import IGNORE, Rendered, pad_batch

# Files that travel with every ONNX form so it loads on its own (tokenizer, chat template, configs).
SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def load_causal(path: str | Path, quantization: str = "none"):
    """Weights (safetensors only, no remote code) and tokenizer; `4bit`/`8bit` load the frozen base through
    bitsandbytes for QLoRA (computing in bf16 on a CUDA device that has it, else fp32: it runs on CPU too)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {}
    if quantization != "none":
        from transformers import BitsAndBytesConfig

        if quantization == "4bit":
            config = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=qlora_compute_dtype(),
            )
        else:
            config = BitsAndBytesConfig(load_in_8bit=True)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        extra = {"quantization_config": config, "device_map": {"": device}}
    model = AutoModelForCausalLM.from_pretrained(
        path, use_safetensors=True, trust_remote_code=False, dtype=torch.float32, **extra
    )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def qlora_compute_dtype():
    """bf16 where the CUDA device computes in it (Ampere and later), else fp32 (CPU, older GPUs)."""
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def adapted(model, lora, quantized: bool):
    """The model that trains: a LoRA adapter around it per the recipe's `lora` section, or (enabled: false)
    the model itself, every weight trainable (full fine-tuning)."""
    if not lora.enabled:
        return model
    return with_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules, quantized)


def merged_model(model, lora, base_path, adapter_dir):
    """The deployable weights after training: the model itself (full fine-tuning), the adapter merged in
    (LoRA), or merged into a fresh fp32 base (QLoRA: merging into k-bit weights would round them)."""
    if not hasattr(model, "peft_config"):
        return model
    if lora.quantization == "none":
        return model.merge_and_unload()
    return merge_full_precision(base_path, adapter_dir)


def with_lora(model, r: int, alpha: int, dropout: float, target_modules: Sequence[str], quantized: bool):
    """A PEFT LoRA model for causal LM; a k-bit base is prepared first (norms in fp32, input grads on)."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        # Gradient checkpointing would halve memory but cost a second forward per step: off by default.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
    )
    return get_peft_model(model, config)


def merge_full_precision(base_path: str | Path, adapter_dir: str | Path):
    """The adapter merged into the fp32 base (for QLoRA too: merging into 4-bit weights would round them)."""
    from peft import PeftModel

    base, _ = load_causal(base_path)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()


def as_rendered(row: dict) -> Rendered:
    return Rendered(list(map(int, row["input_ids"])), list(map(int, row["labels"])), bool(row["truncated"]))


def assistant_loss(model, rows: Sequence[dict], pad_id: int, batch_size: int) -> tuple[float, int]:
    """Mean cross-entropy per assistant token over `rows` (each token weighs the same), and the token count."""
    import torch

    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = pad_batch([as_rendered(r) for r in rows[start : start + batch_size]], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            targets = batch["labels"][:, 1:]
            keep = targets != IGNORE
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1][keep].float(), targets[keep], reduction="sum"
            )
            total += loss.item()
            tokens += int(keep.sum())
    return (total / tokens if tokens else math.nan), tokens


def greedy(model, prompt: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
    """Greedy continuation of one prompt (attention mask passed; stops after a stop id, which is kept)."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt)], device=device)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=list(stop_ids),
            pad_token_id=stop_ids[0],
        )
    return out[0, ids.shape[1] :].tolist()


def copy_side_files(src: Path, dst: Path) -> None:
    for name in SIDE_FILES:
        if (src / name).exists() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)


def export_causal_onnx(model_dir: Path, out: Path) -> Path:
    """Merged checkpoint -> ONNX with KV cache (optimum `ORTModelForCausalLM`), tokenizer alongside."""
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    ORTModelForCausalLM.from_pretrained(model_dir, export=True, use_cache=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    copy_side_files(model_dir, out)
    return out


def lm_head_nodes(model) -> list[str]:
    """Names of the MatMul/Gemm nodes that produce the logits (kept in fp32 by weight-only quantization)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    heads, frontier = [], ["logits"]
    while frontier:
        node = producers.get(frontier.pop())
        if node is None:
            continue
        if node.op_type in ("MatMul", "Gemm"):
            heads.append(node.name)
        elif node.op_type in ("Cast", "Identity", "Reshape", "Add"):
            frontier += list(node.input)
    return heads


def quantize_weight_only(fp32_dir: Path, out: Path, bits: int, block_size: int) -> Path:
    """MatMulNBits: 8- or 4-bit weights in blocks along the input dimension, symmetric, fp32 activations and
    compute; the lm_head stays fp32 (the logits decide every greedy token)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(fp32_dir / "model.onnx"))
    keep = lm_head_nodes(model)
    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, accuracy_level=None, bits=bits
    )
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=block_size, is_symmetric=True, nodes_to_exclude=keep, algo_config=config
    )
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out / "model.onnx"), use_external_data_format=False)
    copy_side_files(fp32_dir, out)
    return out


def quantize_dynamic_int8(fp32_dir: Path, out: Path) -> Path:
    """Dynamic int8 on every MatMul, per-channel u8/u8 (the classifier's config; measured to hurt decoders)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(fp32_dir / "model.onnx"),
        str(out / "model.onnx"),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QUInt8,
    )
    copy_side_files(fp32_dir, out)
    return out


def quantize_form(form: str, fp32_dir: Path, out: Path, block_size: int) -> Path:
    if form == "int8-weight":
        return quantize_weight_only(fp32_dir, out, 8, block_size)
    if form == "int4-weight":
        return quantize_weight_only(fp32_dir, out, 4, block_size)
    if form == "int8-dynamic":
        return quantize_dynamic_int8(fp32_dir, out)
    raise ValueError(f"unknown quantized form {form!r}")
