"""The ChnSentiCorp recipes on their real data: one CSV with no split of its own, split by the seed so that the
smoke and quality recipes hold out the same reviews and never train on them; and Chinese text through the
classify data checks and SmolLM2's tokenizer as `llmpath validate` reports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpath.cli import main
from llmpath.recipes import load_recipe

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMOKE, QUALITY = (
    ROOT / "recipes" / f"{n}.yaml" for n in ("classify-chnsenticorp-smoke", "classify-chnsenticorp")
)


def splits_of(path: Path):
    from llmpath.kinds.classify.data import check_data

    return check_data(load_recipe(path)).splits


def test_smoke_and_quality_hold_out_the_same_reviews_and_never_train_on_them(shared_data):
    from llmpath.splits import load_splits

    smoke, quality = splits_of(SMOKE), splits_of(QUALITY)
    unsampled = load_recipe(QUALITY).data.model_copy(
        update={"max_train_rows": None, "max_validation_rows": None}
    )
    everything = load_splits(unsampled)[0]
    key = lambda row: (row["text"], row["label"])  # noqa: E731
    held_out = {key(r) for r in everything["validation"]}
    # 7,766 rows, one empty review dropped; 15% of the rest held out by the seed, the rest trainable.
    assert len(everything["validation"]) == int(7765 * 0.15) == 1164
    assert len(everything["train"]) == 7765 - 1164
    for recipe in (smoke, quality):
        assert {key(r) for r in recipe["validation"]} <= held_out  # each scores a sample of the same 1,164
        assert not held_out & {key(r) for r in recipe["train"]}  # and trains on none of them
    assert (len(smoke["train"]), len(smoke["validation"])) == (320, 200)
    assert (len(quality["train"]), len(quality["validation"])) == (1200, 600)
    # Both labels are present on each side, in the file's proportions (5,322 positive of 7,766: 0.685).
    for rows in everything.values():
        share = sum(r["label"] == 1 for r in rows) / len(rows)
        assert 0.64 < share < 0.73
    # The text arrives as Chinese, not mangled by the CSV reading: most characters are CJK ideographs.
    text = "".join(r["text"] for r in smoke["validation"])
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) / len(text) > 0.6


def test_validate_names_the_empty_review_by_row_and_field(shared_data, capsys):
    assert main(["validate", str(SMOKE)]) == 0
    out = capsys.readouterr().out
    assert "row 6375: review: empty text" in out
    assert "| train | 320 | negative: 96, positive: 224 |" in out
    assert "Next: llmpath run" in out
