"""pretrain training: the whole model (no adapter) from its random init, causal-LM loss on packed blocks."""

from __future__ import annotations

from pathlib import Path

from llmpath.causal import load_causal


def pad_blocks(batch: list[dict], pad_id: int) -> dict:
    """input_ids, attention_mask and labels of a batch of blocks (only the last block of a split is short)."""
    import torch

    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        block = list(map(int, row["input_ids"]))
        ids[i, : len(block)] = torch.tensor(block)
        mask[i, : len(block)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


class PretrainObjective:
    """Causal LM from scratch: every parameter trains; next-token cross-entropy on every block token."""

    task = "text-generation"

    def build(self, recipe, base_path: Path, device):
        model, tokenizer = load_causal(base_path)  # the scratch base: the random init, as evaluated
        return model.to(device), tokenizer

    def length(self, row: dict) -> int:
        return len(row["input_ids"])

    def loss(self, model, tokenizer, batch: list[dict], recipe, device):
        enc = {k: v.to(device) for k, v in pad_blocks(batch, tokenizer.pad_token_id).items()}
        return model(**enc).loss, int(enc["attention_mask"].sum())

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path):
        return model  # no adapter: the trained model is the whole model
