"""ROUGE-L through rouge-score with our CJK tokens; SQuAD EM/F1 with the v1.1 evaluation's normalization."""

import pytest

from llmpath.metrics.answers import exact_match, normalize_answer, token_f1
from llmpath.metrics.generation import rouge_l, rouge_tokens

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Hello, world!", "hello world", 1.0),  # case and punctuation do not count
        ("state-of-the-art model", "state of the art", 8 / 9),  # LCS 4 of 5 and 4: 2 * 0.8 * 1 / 1.8
        ("a a a b", "a b b b", 0.5),  # LCS "a b"
        ("1 2 3 4 5", "5 4 3 2 1", 0.2),  # LCS of one token
        ("北京是中国的首都。", "中国的首都是北京", 0.625),  # characters: LCS "中国的首都" 5 of 8 and 8
        ("我爱北京 ok", "ok 我爱", 0.5),  # LCS "我爱": P 2/5, R 2/3
        ("Ünïcödé ÜBER", "über alles", 0.5),  # non-ASCII words kept (rouge-score's default drops them)
        ("", "", 1.0),  # two empty texts are the same text
        ("...", "!!", 1.0),  # punctuation only: no tokens either side
        ("", "x", 0.0),
        ("x", "", 0.0),
    ],
)
def test_rouge_l_values(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


def test_rouge_l_is_rouge_scores_lcs_over_our_tokens():
    from rouge_score import rouge_scorer

    plain = rouge_scorer.RougeScorer(["rougeL"])
    text, other = "The cat sat on the mat.", "a cat on a mat"
    assert rouge_l(text, other) == pytest.approx(plain.score(other, text)["rougeL"].fmeasure)
    assert plain.score("我在北京", "我爱北京")["rougeL"].fmeasure == 0.0  # why we bring our tokenizer
    assert rouge_l("我爱北京", "我在北京") == pytest.approx(0.75)


def test_rouge_tokens_split_ideographs_only():
    # An ideograph is a token wherever it stands: after digits, Latin letters or kana too (it was glued on).
    assert rouge_tokens("2020年用Python写") == ["2020", "年", "用", "python", "写"]
    assert rouge_l("2020年", "2021年") == pytest.approx(0.5)
    # Kana and Hangul are letters, kept in runs as before.
    assert rouge_tokens("東京に行きます") == ["東", "京", "に", "行", "きます"]
    assert rouge_tokens("안녕하세요 World") == ["안녕하세요", "world"]


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("U.S.", "us"),  # punctuation deleted, not replaced by a space
        ("the Eiffel Tower!", "eiffel tower"),
        ("An  apple,a day", "applea day"),  # "apple,a" -> "applea": not an article any more
        ("state-of-the-art", "stateoftheart"),
        ("The the THE", ""),
        ("«Les Misérables»", "«les misérables»"),  # only ASCII punctuation goes, as in the official script
        ("", ""),
    ],
)
def test_normalize_answer_is_squad_v1(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match():
    assert exact_match("U.S.", ["US"]) == 1.0
    assert exact_match("the Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower", "the tower"]) == 0.0
    assert exact_match("1,000", ["1000"]) == 1.0
    assert exact_match("", [""]) == 1.0 and exact_match("", ["x"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_partial_overlap_and_empty_cases():
    # 2 shared tokens ("denver", "broncos"), P = 2/3, R = 2/2 -> F1 = 0.8
    assert token_f1("the Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # bags of tokens: "x x y" and "x y y" share one x and one y, P = R = 2/3
    assert token_f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert token_f1("U.S. army", ["US Army", "the army"]) == 1.0  # the best reference counts
    assert token_f1("", [""]) == 1.0 and token_f1("The", ["a"]) == 1.0  # both empty once normalized
    assert token_f1("", ["x"]) == 0.0 and token_f1("x", ["!!"]) == 0.0
    assert token_f1("x", []) == 0.0
