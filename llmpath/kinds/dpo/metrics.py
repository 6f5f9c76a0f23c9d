"""Preference metrics, pure logic, from the summed log-probabilities of each pair's answers.

- `preference_accuracy` (the gate): share of pairs where the model gives the chosen answer a higher sequence
  log-probability (summed over its tokens, given the prompt) than the rejected one. It needs no reference, so
  base and candidate are scored alike. With the reference fixed, this is what DPO moves: the implicit reward
  difference is beta * ((log p(c) - log p(r)) - (log p_ref(c) - log p_ref(r))).
- `reward_margin`: mean of that implicit reward difference, with the base model as the reference (so it is 0
  for the base itself), and `reward_accuracy`: share of pairs where it is positive (DPO's rewards/accuracies).
- `logp_margin`: mean of log p(c) - log p(r), in nats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def preference_metrics(
    chosen: Sequence[float],
    rejected: Sequence[float],
    beta: float,
    ref_chosen: Sequence[float] | None = None,
    ref_rejected: Sequence[float] | None = None,
) -> dict[str, float]:
    """Metrics of one model over the pairs; the reference's log-probs (the base) give the reward metrics
    (absent: the model is its own reference, margin 0)."""
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(
            f"need as many chosen as rejected scores, at least one ({len(chosen)}, {len(rejected)})"
        )
    ref_chosen = chosen if ref_chosen is None else ref_chosen
    ref_rejected = rejected if ref_rejected is None else ref_rejected
    if not len(ref_chosen) == len(ref_rejected) == len(chosen):
        raise ValueError("the reference must score the same pairs")
    n = len(chosen)
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    rewards = [
        beta * ((c - rc) - (r - rr))
        for c, r, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected, strict=True)
    ]
    return {
        "preference_accuracy": sum(d > 0 for d in diffs) / n,
        "logp_margin": sum(diffs) / n,
        "reward_margin": sum(rewards) / n,
        "reward_accuracy": sum(r > 0 for r in rewards) / n,
        "chosen_logp": sum(chosen) / n,
        "rejected_logp": sum(rejected) / n,
    }


def mean_step_metrics(collected: dict[str, list[float]], names: dict[str, str]) -> dict[str, float]:
    """The mean of each collected per-batch value that `names` maps (TRL's key -> our metric name); finite only."""
    out = {}
    for key, name in names.items():
        values = [v for v in collected.get(key, []) if math.isfinite(v)]
        if values:
            out[name] = sum(values) / len(values)
    return out
