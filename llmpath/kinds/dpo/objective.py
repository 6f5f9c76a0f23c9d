"""dpo training: a LoRA adapter on the base, trained with TRL's DPO loss (`DPOTrainer.compute_loss`: the
concatenated chosen/rejected forward, the reference = the same model with its adapter switched off) on batches
from TRL's preference collator. The shared loop (llmpath/training.py) stays the loop: it calls `loss` per batch
and logs `step_metrics` (TRL's rewards/chosen, rewards/rejected, margins, accuracies) per step."""

from __future__ import annotations

from pathlib import Path

from llmpath.causal import adapted, load_causal, merged_model
from llmpath.kinds.dpo.metrics import mean_step_metrics

# TRL's per-batch statistics -> the names the run logs them under, per step.
STEP_METRICS = {
    "rewards/chosen": "dpo.rewards_chosen",
    "rewards/rejected": "dpo.rewards_rejected",
    "rewards/margins": "dpo.rewards_margin",
    "rewards/accuracies": "dpo.rewards_accuracy",
    "logps/chosen": "dpo.logps_chosen",
    "logps/rejected": "dpo.logps_rejected",
}


class DpoObjective:
    """Holds TRL's trainer for its loss and collator only (its own training loop is never run)."""

    task = "text-generation"

    def __init__(self) -> None:
        self.trainer = None

    def build(self, recipe, base_path: Path, device):
        model, tokenizer = load_causal(base_path, recipe.lora.quantization)
        quantized = recipe.lora.quantization != "none"
        if not quantized:
            model = model.to(device)
        model = adapted(model, recipe.lora, quantized)
        self.trainer = dpo_trainer(model, tokenizer, recipe)
        return model, tokenizer

    def length(self, row: dict) -> int:
        return len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))

    def loss(self, model, tokenizer, batch: list[dict], recipe, device):
        inputs = self.collate(batch, device)
        loss = self.trainer.compute_loss(model, inputs)
        return loss, int(inputs["attention_mask"].sum())

    def collate(self, batch: list[dict], device) -> dict:
        examples = [
            {k: [int(x) for x in row[k]] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
            for row in batch
        ]
        return {k: v.to(device) for k, v in self.trainer.data_collator(examples).items()}

    def step_metrics(self) -> dict[str, float]:
        """The DPO statistics of the batches since the last call (then cleared)."""
        collected = self.trainer._metrics["train"]
        out = mean_step_metrics(collected, STEP_METRICS)
        collected.clear()
        return out

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path):
        return merged_model(model, recipe.lora, base_path, adapter_dir)


def dpo_trainer(model, tokenizer, recipe):
    """TRL's DPOTrainer around the adapter model, for its loss and collator. The reference is the base: TRL
    copies a fresh adapter as `ref` (zero-initialized LoRA: the same function as no adapter); we drop that copy
    so the reference is the adapter switched off and the saved adapter is ours alone. Full fine-tuning
    (`lora.enabled: false`): TRL keeps a frozen copy of the base as the reference (the weights twice in memory)."""
    import logging

    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from llmpath import progress, tracking

    class LossOnly(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset  # tokenized already; TRL's `datasets.map` hashing would print bytecode via Prefect

    logging.getLogger("trl").setLevel(logging.ERROR)
    cfg = recipe.dpo
    args = DPOConfig(
        output_dir=str(tracking.scratch("trl-")),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        label_smoothing=cfg.label_smoothing,
        max_length=recipe.model.max_length,
        per_device_train_batch_size=recipe.train.batch_size,
        report_to="none",
        dataloader_num_workers=0,
        disable_dropout=False,
        use_cpu=not _cuda(),
        seed=recipe.train.seed,
        save_strategy="no",
    )
    # TRL wants a dataset to build: one tokenized placeholder row (the shared loop feeds the real batches).
    with progress.builtin_print():  # datasets fingerprints it through dill, which captures its own prints
        placeholder = Dataset.from_list([{"prompt_ids": [0], "chosen_ids": [0], "rejected_ids": [0]}])
        trainer = LossOnly(model=model, args=args, train_dataset=placeholder, processing_class=tokenizer)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")
    return trainer


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
