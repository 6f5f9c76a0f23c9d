"""qa's pure logic: SQuAD's official normalization and EM/F1 on known values, SQuAD files read by paragraph
and field (never quoting text), the held-out split by whole paragraph or article, windows and character
offsets (non-ASCII too), span decoding limits and the parity form choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bentos.qa.runtime import best_span, label_window, windows
from llmpath.families.span.export import choose_form
from llmpath.families.span.reader import read_passages, span_agreement, training_windows
from llmpath.families.span.squad import load_squad, normalize_answer, split_by_group, squad_scores
from llmpath.files import DataError
from llmpath.results import ParityError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("packaged:all-minilm-l6-v2").path)


# ---- SQuAD v1.1's evaluation ---------------------------------------------------------------------------------


def test_normalization_is_squads():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("U.S. Army") == "us army"  # punctuation deleted, not replaced by a space
    assert normalize_answer("an apple, a pear and THE plum") == "apple pear and plum"
    assert normalize_answer("theory") == "theory"  # articles are whole words only


def test_exact_match_and_f1_against_known_values():
    # The official script's arithmetic: "Denver Broncos" vs "the Denver Broncos team" -> P 2/3, R 1 -> F1 0.8.
    scores = squad_scores(
        ["Denver Broncos", "Carolina", "nothing"],
        [["the Denver Broncos team"], ["Carolina Panthers", "Carolina"], ["x"]],
    )
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert squad_scores([], []) == {"exact_match": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        squad_scores(["a", "b"], [["a"]])


# ---- reading SQuAD -------------------------------------------------------------------------------------------


def squad_file(tmp_path, paragraphs_per_article=(3, 2)):
    data = []
    for a, n in enumerate(paragraphs_per_article):
        paragraphs = []
        for p in range(n):
            context = f"Paragraph {a}-{p} says the answer is Zorblax number {p}. Nothing else."
            start = context.index("Zorblax")
            qas = [
                {
                    "id": f"q{a}-{p}-{k}",
                    "question": f"What is it ({k})?",
                    "answers": [{"text": "Zorblax", "answer_start": start}],
                }
                for k in range(2)
            ]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Art{a}", "paragraphs": paragraphs})
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": data}))
    return path, data


def test_load_squad_keeps_good_questions_and_names_bad_ones_without_their_text(tmp_path):
    path, data = squad_file(tmp_path)
    secret = "SECRET-TEXT-42"
    qas = data[0]["paragraphs"][0]["qas"]
    qas.append({"id": "bad-start", "question": secret, "answers": [{"text": secret, "answer_start": 3}]})
    qas.append({"id": "q0-0-0", "question": "dup?", "answers": [{"text": "Zorblax", "answer_start": 0}]})
    qas.append({"id": "no-answers", "question": "where?"})
    qas.append({"id": 7, "question": "typed?", "answers": []})
    path.write_text(json.dumps({"data": data}))
    report = load_squad(path)
    assert len(report.kept) == 10 and report.rows == 14
    problems = {(i.field, i.problem) for i in report.issues}
    assert (
        "Art0 paragraph 1.qas[3].answers",
        "answer_start does not point at the answer text in the context",
    ) in problems
    assert ("Art0 paragraph 1.qas[4].id", "duplicate: an earlier question's id") in problems
    assert ("Art0 paragraph 1.qas[5].answers", "missing") in problems
    assert ("Art0 paragraph 1.qas[6].id", "missing or wrong type") in problems
    assert secret not in repr(report.issues)
    row = report.kept[0]
    assert (
        row["context"][row["answer_starts"][0] :].startswith(row["answers"][0])
        and row["paragraph"] == "Art0#1"
    )


def test_a_file_that_is_not_squad_is_one_clear_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2")
    with pytest.raises(DataError, match=r"x.json: not JSON \(line 1\)"):
        load_squad(path)
    path.write_text(json.dumps([{"text": "a"}]))
    with pytest.raises(DataError, match="no top-level `data` list"):
        load_squad(path)


@pytest.mark.parametrize("by,key", [("paragraph", "paragraph"), ("article", "title")])
def test_the_split_holds_out_whole_groups(tmp_path, by, key):
    rows = load_squad(squad_file(tmp_path, (3, 3, 2, 2))[0]).kept
    train, held = split_by_group(rows, by, 0.3, seed=1)
    assert train and held and len(train) + len(held) == len(rows)
    assert not {r[key] for r in train} & {r[key] for r in held}
    assert not {r["context"] for r in train} & {
        r["context"] for r in held
    }  # no held-out paragraph trained on
    assert split_by_group(rows, by, 0.3, seed=1) == (train, held)  # seeded


def test_one_paragraph_cannot_be_split(tmp_path):
    rows = load_squad(squad_file(tmp_path, (1,))[0]).kept
    with pytest.raises(DataError, match="only 1 paragraph with usable questions"):
        split_by_group(rows, "paragraph", 0.2, seed=0)


# ---- windows, offsets and spans ------------------------------------------------------------------------------


def test_windows_cover_a_long_context_with_overlap_and_true_offsets(tokenizer):
    context = " ".join(f"word{i}" for i in range(300)) + " Zürich café 東京 end."
    win = windows(tokenizer, "Which city?", context, max_length=64, stride=16)
    n = len(win["input_ids"])
    assert n > 5 and win["input_ids"].shape == win["attention_mask"].shape == (n, 64)
    seen = set()
    for w in range(n):
        for i in np.flatnonzero(win["in_context"][w]):
            s, e = win["offsets"][w][i]
            assert 0 <= s < e <= len(context)
            seen.add(int(s))
    # every word of the context starts a token in some window; the last window holds the non-ASCII tail
    assert {context.index("Zürich"), context.index("東京"), context.index("end.")} <= seen
    first, second = (set(win["offsets"][w][win["in_context"][w]][:, 0].tolist()) for w in (0, 1))
    assert len(first & second) >= 8  # consecutive windows overlap by the stride


def test_a_question_longer_than_half_the_window_is_cut(tokenizer):
    win = windows(tokenizer, "why " * 200, "a short context here", max_length=32, stride=8)
    assert win["input_ids"].shape[1] <= 32 and win["in_context"].any(axis=1).all()


def test_label_window_marks_the_answer_tokens_or_cls(tokenizer):
    context = "The game was played in Santa Clara, California, at Levi's Stadium."
    start = context.index("Santa Clara")
    win = windows(tokenizer, "Where?", context, max_length=64, stride=0)
    s, e = label_window(win["offsets"][0], win["in_context"][0], start, start + len("Santa Clara"))
    assert context[win["offsets"][0][s][0] : win["offsets"][0][e][1]] == "Santa Clara"
    assert label_window(win["offsets"][0], win["in_context"][0], 500, 510) == (0, 0)


def test_training_windows_pad_and_label_every_window(tokenizer):
    context = " ".join(f"w{i}" for i in range(120)) + " the answer Zorblax here"
    rows = [
        {
            "question": "q?",
            "context": context,
            "answers": ["Zorblax"],
            "answer_starts": [context.index("Zorblax")],
        },
        {"question": "short?", "context": "Zorblax it is.", "answers": ["Zorblax"], "answer_starts": [0]},
    ]
    feats = training_windows(tokenizer, rows, max_length=48, stride=8)
    n = len(feats["start_positions"])
    assert feats["input_ids"].shape == (n, 48) and n >= 4
    assert (
        feats["start_positions"] > 0
    ).sum() >= 2  # the answer's window(s) of each question, others at [CLS]
    assert (feats["start_positions"] <= feats["end_positions"]).all()


def test_best_span_respects_order_length_and_the_context_mask():
    offsets = np.array([[[0, 0], [0, 3], [4, 7], [8, 11], [12, 15], [0, 0]]])
    in_context = np.array([[False, True, True, True, True, False]])
    start = np.array([[9.0, 0.0, 5.0, 0.0, 0.0, 9.0]])
    end = np.array([[9.0, 6.0, 0.0, 0.0, 4.0, 9.0]])  # end 1 precedes start 2: never chosen together
    s, e, score = best_span(start, end, offsets, in_context, max_answer_tokens=30)
    assert (s, e) == (4, 15) and 0 < score < 1
    s, e, _ = best_span(start, end, offsets, in_context, max_answer_tokens=2)  # at most 2 tokens
    assert (s, e) == (0, 3)  # (1, 1) scores 6; the 9 of (2, 4) needs three tokens
    nothing = np.zeros((1, 6), dtype=bool)
    assert best_span(start, end, offsets, nothing, 30) == (0, 0, 0.0)


def test_span_agreement_and_the_form_choice():
    a = [{"start": 0, "end": 3}, {"start": 4, "end": 9}]
    assert span_agreement(a, a) == 1.0 and span_agreement(a, [a[0], {"start": 4, "end": 8}]) == 0.5

    class Cfg:
        max_f1_drop, min_agreement = 0.01, 0.95

    good, bad = {"f1_drop": 0.0, "agreement": 1.0}, {"f1_drop": 0.05, "agreement": 0.8}
    assert choose_form(good, good, Cfg)[0] == "int8"
    form, reason = choose_form(good, bad, Cfg)
    assert form == "fp32" and "int8 outside tolerance" in reason
    with pytest.raises(ParityError):
        choose_form(bad, None, Cfg)


def test_read_passages_takes_the_best_scoring_span():
    class Reader:
        def answer(self, question, context):
            return {"answer": context.split()[0], "score": len(context) / 100, "start": 0, "end": 1}

    got = read_passages(Reader(), "q?", ["short", "", "a much longer passage"])
    assert got["passage"] == 2 and got["answer"] == "a"
    assert read_passages(Reader(), "q?", [])["answer"] == ""
