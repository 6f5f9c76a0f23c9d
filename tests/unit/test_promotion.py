import pytest

from llmpath.promotion import decide

pytestmark = pytest.mark.unit


def test_first_candidate_that_beats_base_is_promoted():
    d = decide("accuracy", candidate=0.80, base=0.50, champion=None)
    assert d.promote and "no champion yet" in d.reason


def test_candidate_not_better_than_base_is_kept():
    d = decide("accuracy", candidate=0.50, base=0.50, champion=None)
    assert not d.promote and "base" in d.reason


def test_candidate_must_beat_champion():
    d = decide("accuracy", candidate=0.80, base=0.50, champion=0.85, champion_version="3")
    assert not d.promote and "champion v3" in d.reason
    assert decide("accuracy", candidate=0.86, base=0.50, champion=0.85, champion_version="3").promote


def test_tie_with_champion_is_not_a_win():
    assert not decide("macro_f1", candidate=0.85, base=0.5, champion=0.85, champion_version="1").promote


def test_min_improvement_margin():
    assert not decide("accuracy", 0.855, 0.5, 0.85, "1", min_improvement=0.01).promote
    assert decide("accuracy", 0.861, 0.5, 0.85, "1", min_improvement=0.01).promote
    assert not decide("accuracy", 0.505, 0.5, None, min_improvement=0.01).promote


def test_decision_records_all_three_scores():
    record = decide("accuracy", 0.9, 0.5, 0.8, "2").as_dict()
    assert record["candidate"] == 0.9 and record["base"] == 0.5 and record["champion"] == 0.8
    assert record["champion_version"] == "2" and record["promote"] is True
