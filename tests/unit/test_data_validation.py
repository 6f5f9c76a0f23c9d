import json

import pytest

from llmpath.config import DataConfig
from llmpath.data import DataError, check_threshold, load_rows, resolve_path, validate_rows

pytestmark = pytest.mark.unit

CFG = DataConfig(train="x.tsv", text_column="sentence", label_column="label", labels=["negative", "positive"])

BAD_TSV = (
    "sentence\tlabel\n"
    "a fine film \t1\n"  # row 1 ok
    "\t0\n"  # row 2 empty text
    "dull \t\n"  # row 3 missing label
    "odd \t7\n"  # row 4 label out of range
    "a fine film \t1\n"  # row 5 duplicate of row 1
    'he said "wow" \tpositive\n'  # row 6 ok: label by name, a bare quote stays literal
    "meh \tmaybe\n"  # row 7 unknown label name
)


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text(BAD_TSV)
    return path


def test_bad_rows_get_exact_report(bad_file):
    report = validate_rows(load_rows(bad_file), CFG, "bad.tsv")
    assert [str(i) for i in report.issues] == [
        "bad.tsv: row 2: sentence: empty text",
        "bad.tsv: row 3: label: missing",
        "bad.tsv: row 4: label: unknown label 7 (expected 0..1)",
        "bad.tsv: row 5: sentence: duplicate: same as row 1",
        "bad.tsv: row 7: label: unknown label 'maybe' (expected one of ['negative', 'positive'] or 0..1)",
    ]
    assert report.kept == [{"text": "a fine film ", "label": 1}, {"text": 'he said "wow" ', "label": 1}]
    assert report.rows == 7 and report.invalid == 4 and report.duplicates == 1
    assert report.counts() == {"duplicate": 1, "empty text": 1, "missing label": 1, "unknown label": 2}


def test_threshold_fails_with_rows_named(bad_file):
    report = validate_rows(load_rows(bad_file), CFG, "bad.tsv")
    with pytest.raises(DataError) as err:
        check_threshold(report, CFG)
    message = str(err.value)
    assert "4 of 7 rows invalid" in message and "bad.tsv: row 3: label: missing" in message
    assert "max_invalid_fraction" in message


def test_threshold_drops_when_allowed(bad_file):
    lenient = CFG.model_copy(update={"max_invalid_fraction": 0.6})
    report = validate_rows(load_rows(bad_file), lenient, "bad.tsv")
    check_threshold(report, lenient)  # does not raise
    assert len(report.kept) == 2


def test_wrong_types_in_json(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"sentence": "ok", "label": 0}, {"sentence": 12, "label": 1}, {"sentence": "x", "label": 1.5}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = [{"sentence": r["sentence"], "label": r["label"]} for r in rows]  # as written, not coerced
    issues = [str(i) for i in validate_rows(loaded, CFG, str(path)).issues]
    assert issues == [f"{path}: row 2: sentence: wrong type: int", f"{path}: row 3: label: wrong type: float"]


def test_missing_column_is_named(tmp_path):
    with pytest.raises(
        DataError, match=r"column\(s\) \['sentence'\] not found; columns are \['text', 'label'\]"
    ):
        validate_rows([{"text": "a", "label": 0}], CFG, "f.tsv")


def test_relative_path_needs_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMPATH_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="LLMPATH_DATA_DIR"):
        resolve_path("sst2/train.tsv")
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    assert resolve_path("sst2/train.tsv") == tmp_path / "sst2" / "train.tsv"
    with pytest.raises(DataError, match="not found"):
        resolve_path("sst2/dev.tsv")
