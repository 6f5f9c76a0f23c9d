"""chat training: LoRA (or QLoRA, with bitsandbytes) on a causal LM, cross-entropy on the assistant tokens."""

from __future__ import annotations

from pathlib import Path

from llmpath.causal import adapted, as_rendered, load_causal, merged_model


class ChatObjective:
    """Causal LM: LoRA (or QLoRA) adapters, cross-entropy on the assistant tokens only."""

    task = "text-generation"

    def build(self, recipe, base_path: Path, device):
        model, tokenizer = load_causal(base_path, recipe.lora.quantization)
        quantized = recipe.lora.quantization != "none"
        if not quantized:
            model = model.to(device)  # a k-bit model is placed on its device when it loads
        return adapted(model, recipe.lora, quantized), tokenizer

    def length(self, row: dict) -> int:
        return len(row["input_ids"])

    def loss(self, model, tokenizer, batch: list[dict], recipe, device):
        from llmpath.chat import pad_batch

        enc = {
            k: v.to(device)
            for k, v in pad_batch([as_rendered(r) for r in batch], tokenizer.pad_token_id).items()
        }
        return model(**enc).loss, int(enc["attention_mask"].sum())

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path):
        return merged_model(model, recipe.lora, base_path, adapter_dir)
