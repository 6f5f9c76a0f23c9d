"""Token choice of the ONNX chat runtime: greedy, temperature and nucleus sampling."""

from __future__ import annotations

import numpy as np
import pytest

from bentos.chat.runtime import pick

pytestmark = pytest.mark.unit


def test_greedy_and_a_tiny_nucleus_pick_the_top_token():
    logits = np.array([0.1, 3.0, 2.9, -1.0])
    rng = np.random.default_rng(0)
    assert pick(logits, 0.0, 1.0, rng) == 1
    assert {pick(logits, 1.0, 0.01, rng) for _ in range(50)} == {1}  # nucleus of one token


def test_sampling_follows_temperature_and_stays_in_the_nucleus():
    logits = np.array([2.0, 1.0, 0.0, -5.0])
    rng = np.random.default_rng(0)
    draws = [pick(logits, 1.0, 0.9, rng) for _ in range(2000)]
    assert 3 not in draws  # outside the 0.9 nucleus
    share = draws.count(0) / len(draws)
    p = np.exp(logits[:2]) / np.exp(logits[:2]).sum()  # renormalised over the nucleus {0, 1}
    assert share == pytest.approx(p[0], abs=0.04)
    cold = [pick(logits, 0.05, 1.0, rng) for _ in range(200)]
    assert cold.count(0) == 200  # near-zero temperature is greedy in effect
