"""qa training: a seeded span head (start and end logits per token) on the encoder, every weight trained,
cross-entropy on the answer's first and last token in each window."""

from __future__ import annotations

from pathlib import Path


def load_span_model(path: str | Path, seed: int | None = None):
    """Weights (safetensors only) with a span head; with a seed the new head is initialised reproducibly, so
    the base evaluated is exactly the model training starts from."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model, tokenizer


class QaObjective:
    task = "question-answering"

    def build(self, recipe, base_path: Path, device):
        model, tokenizer = load_span_model(base_path, seed=recipe.train.seed)
        return model.to(device), tokenizer

    def length(self, row: dict) -> int:
        return len(row["context"]) + len(row["question"])

    def loss(self, model, tokenizer, batch: list[dict], recipe, device):
        import torch

        from llmpath.families.span.reader import training_windows

        feats = training_windows(tokenizer, batch, recipe.model.max_length, recipe.serve.stride)
        enc = {k: torch.from_numpy(v).to(device) for k, v in feats.items()}
        return model(**enc).loss, int(enc["attention_mask"].sum())

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path):
        return model  # no adapter: the whole model is trained
