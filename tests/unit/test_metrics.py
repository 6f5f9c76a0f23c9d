import pytest

from llmpath.metrics import agreement, classification_metrics, confusion_matrix

pytestmark = pytest.mark.unit


def test_confusion_matrix_rows_are_truth():
    assert confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 2) == [[1, 1], [1, 2]]


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # neg: p=1/2 r=1/2 f1=0.5; pos: p=2/3 r=2/3 f1=2/3
    assert m["f1_neg"] == pytest.approx(0.5)
    assert m["f1_pos"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_constant_predictor_has_zero_f1_for_missing_class():
    m = classification_metrics([0, 1, 1, 1], [1, 1, 1, 1], ["neg", "pos"])
    assert m["f1_neg"] == 0.0 and m["accuracy"] == 0.75


def test_agreement():
    assert agreement([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    with pytest.raises(ValueError):
        agreement([0], [0, 1])
