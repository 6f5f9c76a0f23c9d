"""classify training: a seeded classification head on the encoder, LoRA adapters, cross-entropy on the label."""

from __future__ import annotations

from pathlib import Path

from llmpath.classifier import load_for_classification


class ClassifyObjective:
    task = "text-classification"

    def build(self, recipe, base_path: Path, device):
        from peft import LoraConfig, TaskType, get_peft_model

        model, tokenizer = load_for_classification(base_path, recipe.data.labels, seed=recipe.train.seed)
        if not recipe.lora.enabled:  # full fine-tuning: every weight, the new head included, trains
            return model.to(device), tokenizer
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,  # keeps the new classifier head trainable (modules_to_save)
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=list(recipe.lora.target_modules),
        )
        return get_peft_model(model, config).to(device), tokenizer

    def length(self, row: dict) -> int:
        return len(row["text"])

    def loss(self, model, tokenizer, batch: list[dict], recipe, device):
        import torch

        enc = tokenizer(
            [r["text"] for r in batch],
            truncation=True,
            max_length=recipe.model.max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        labels = torch.tensor([int(r["label"]) for r in batch], device=device)
        return model(**enc, labels=labels).loss, int(enc["attention_mask"].sum())

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path):
        return model.merge_and_unload() if hasattr(model, "peft_config") else model
