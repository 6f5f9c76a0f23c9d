"""Which exported chat form ships: pure decision logic over measured figures."""

import pytest

from llmpath.families.causal_lm.export import choose_chat_form
from tasks.export import ParityError

pytestmark = pytest.mark.unit


def form(agreement: float, speed: float, size: float) -> dict[str, float]:
    return {"top1_agreement": agreement, "tokens_per_second": speed, "size_mb": size, "identical": 1.0}


def test_fastest_passing_form_ships_and_failures_are_named():
    scores = {
        "fp32": form(1.0, 30.0, 514),
        "int8-weight": form(0.98, 7.0, 223),
        "int4-weight": form(0.90, 40.0, 150),  # fastest, but below the floor
    }
    chosen, reason = choose_chat_form(scores, 0.95, "speed")
    assert chosen == "fp32"
    assert "below the floor 0.95: int4-weight (0.900)" in reason and "int8-weight: agreement 0.980" in reason


def test_a_quantized_form_ships_when_it_passes_and_wins():
    scores = {"fp32": form(1.0, 30.0, 514), "int8-weight": form(0.97, 45.0, 223)}
    assert choose_chat_form(scores, 0.95, "speed")[0] == "int8-weight"
    scores["int8-weight"] = form(0.97, 10.0, 223)
    assert choose_chat_form(scores, 0.95, "speed")[0] == "fp32"
    assert choose_chat_form(scores, 0.95, "size")[0] == "int8-weight"  # smaller, and it passes
    assert choose_chat_form(scores, 0.99, "size")[0] == "fp32"  # the floor decides before the preference


def test_nothing_ships_when_fp32_disagrees_with_pytorch():
    with pytest.raises(ParityError, match="export is wrong"):
        choose_chat_form({"fp32": form(0.5, 30.0, 514), "int8-weight": form(0.99, 40.0, 200)}, 0.95, "speed")
