import pytest

from llmpath.metrics.classification import agreement, classification_metrics, confusion_matrix

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


def test_rouge_l_known_values():
    from llmpath.metrics.generation import rouge_l, rouge_tokens

    # LCS "the cat on the mat": P = 5/5, R = 5/6 -> F1 = 10/11
    assert rouge_l("The cat on the mat.", "the cat sat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("completely different", "nothing shared here") == 0.0
    assert rouge_l("", "") == 1.0 and rouge_l("", "x") == 0.0
    assert rouge_tokens("我爱北京 ok") == ["我", "爱", "北", "京", "ok"]
    # Chinese is compared character by character: 3 of 4 characters in order.
    assert rouge_l("我爱北京", "我在北京") == pytest.approx(0.75)


def test_perplexity_and_token_agreement():
    import math

    from llmpath.metrics.generation import perplexity, token_agreement

    assert perplexity(math.log(20.0)) == pytest.approx(20.0)
    assert perplexity(1e6) == pytest.approx(math.exp(50))
    assert token_agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert token_agreement([[1, 2, 3, 4]], [[1, 2, 9, 4]]) == 0.75
    assert token_agreement([[1, 2, 3, 4]], [[1, 2]]) == 0.5  # stopped early
    assert token_agreement([[1, 2], [5]], [[1, 2, 7], [5]]) == 0.75  # ran on: 3 of 4 positions agree
