"""The promotion gate: a candidate becomes champion only if it beats the base and the champion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    candidate: float
    base: float
    champion: float | None
    champion_version: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def decide(
    metric: str,
    candidate: float,
    base: float,
    champion: float | None,
    champion_version: str | None = None,
    min_improvement: float = 0.0,
) -> Decision:
    """Compare three scores; strictly better than base and champion (by at least `min_improvement`)."""

    def make(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, metric, candidate, base, champion, champion_version)

    if candidate <= base + min_improvement:
        return make(False, f"{metric} {candidate:.4f} does not beat base {base:.4f} (+{min_improvement})")
    if champion is not None and candidate <= champion + min_improvement:
        return make(
            False,
            f"{metric} {candidate:.4f} does not beat champion v{champion_version} {champion:.4f} (+{min_improvement})",
        )
    against = "no champion yet" if champion is None else f"champion v{champion_version} {champion:.4f}"
    return make(True, f"{metric} {candidate:.4f} beats base {base:.4f} and {against}")


def decide_floor(
    metric: str, candidate: float, floor: float, champion: float | None, champion_version: str | None = None
) -> Decision:
    """rag: an index may become champion when it reaches the floor and is not below the champion (an equal
    score promotes: a rebuilt index with the same recall is as good, and newer)."""

    def make(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, metric, candidate, floor, champion, champion_version)

    if candidate < floor:
        return make(False, f"{metric} {candidate:.4f} is below the floor {floor:.4f} (eval.floor)")
    if champion is not None and candidate < champion:
        return make(False, f"{metric} {candidate:.4f} is below champion v{champion_version} {champion:.4f}")
    against = "no champion yet" if champion is None else f"champion v{champion_version} {champion:.4f}"
    return make(True, f"{metric} {candidate:.4f} reaches the floor {floor:.4f} and {against}")
