import json

import pytest

from llmpath.data import DataError, check_threshold, load_rows, resolve_path, validate_rows
from llmpath.kinds.classify.recipe import ClassifyData

pytestmark = pytest.mark.unit

CFG = ClassifyData(
    train="x.tsv", text_column="sentence", label_column="label", labels=["negative", "positive"]
)

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
        "bad.tsv: row 7: label: unknown label: not one of ['negative', 'positive'] nor 0..1",
    ]
    assert report.kept == [{"text": "a fine film ", "label": 1}, {"text": 'he said "wow" ', "label": 1}]
    assert report.rows == 7 and report.invalid == 4 and report.duplicates == 1
    assert report.counts() == {"duplicate": 1, "empty text": 1, "missing label": 1, "unknown label": 2}


def test_threshold_fails_with_rows_named(bad_file):
    report = validate_rows(load_rows(bad_file), CFG, "bad.tsv")
    with pytest.raises(DataError) as err:
        check_threshold(report, CFG)
    message = str(err.value)
    assert message.startswith("bad.tsv: 4 of 7 rows invalid") and "; row 3: label: missing;" in message
    assert "\n" not in message  # one line
    assert "max_invalid_fraction" in message


def test_threshold_drops_when_allowed(bad_file):
    lenient = CFG.model_copy(update={"max_invalid_fraction": 0.6})
    report = validate_rows(load_rows(bad_file), lenient, "bad.tsv")
    check_threshold(report, lenient)  # does not raise
    assert len(report.kept) == 2


def test_wrong_types_in_json_are_reported_by_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"sentence": "ok", "label": 0}, {"sentence": 12, "label": 1}, {"sentence": "x", "label": 1.5}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    issues = [str(i) for i in validate_rows(load_rows(path), CFG, str(path)).issues]
    assert issues == [f"{path}: row 2: sentence: wrong type: int", f"{path}: row 3: label: wrong type: float"]


def test_broken_files_name_file_and_line(tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"sentence": "ok", "label": 0}\n{"sentence": "x", "label": \n')
    with pytest.raises(DataError, match=r"rows.jsonl: line 2: not valid JSON"):
        load_rows(jsonl)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("sentence,label\nfine,1\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"ragged.csv: could not be read as csv: .*line 3"):
        load_rows(ragged)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_every_format_gives_the_same_rows(tmp_path, fmt):
    import pandas as pd

    frame = pd.DataFrame({"sentence": ["a good film", "a bad film", "fine"], "label": [1, 0, 1]})
    path = tmp_path / f"rows.{fmt}"
    {
        "csv": lambda: frame.to_csv(path, index=False),
        "json": lambda: frame.to_json(path, orient="records"),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path, index=False),
    }[fmt]()
    report = validate_rows(load_rows(path), CFG, path.name)
    assert report.kept == [
        {"text": "a good film", "label": 1},
        {"text": "a bad film", "label": 0},
        {"text": "fine", "label": 1},
    ]


def test_splits_are_seeded(tmp_path, monkeypatch):
    from llmpath.splits import load_splits

    lines = ["sentence\tlabel"] + [f"row {i}\t{i % 2}" for i in range(100)]
    (tmp_path / "all.tsv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    cfg = CFG.model_copy(update={"train": "all.tsv", "validation_fraction": 0.2, "max_train_rows": 50})
    first, _ = load_splits(cfg)
    assert len(first["validation"]) == 20 and len(first["train"]) == 50
    assert load_splits(cfg)[0] == first
    assert load_splits(cfg.model_copy(update={"seed": 7}))[0] != first
    assert not {r["text"] for r in first["train"]} & {r["text"] for r in first["validation"]}


def test_missing_column_is_named(tmp_path):
    # The file's own column names are its content (the first line of any file read as a table): not quoted.
    with pytest.raises(DataError, match=r"column\(s\) \['sentence'\] not found \(the rows have 2 columns\)"):
        validate_rows([{"texte-secret": "a", "label": 0}], CFG, "f.tsv")


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


def test_training_rows_seen_in_validation_are_dropped_and_reported(tmp_path, monkeypatch):
    from llmpath.kinds.classify.data import build_report
    from llmpath.splits import load_splits

    (tmp_path / "train.tsv").write_text("sentence\tlabel\nshared text\t1\nonly train\t0\nalso train\t1\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nshared text\t1\nonly dev\t0\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    cfg = CFG.model_copy(update={"train": "train.tsv", "validation": "dev.tsv"})
    splits, reports = load_splits(cfg)
    assert sorted(r["text"] for r in splits["train"]) == ["also train", "only train"]

    class Tok:  # the report only needs token counts
        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [t.split() for t in texts]}

    from llmpath.recipes import parse_recipe

    recipe = parse_recipe(
        {"name": "r", "registered_model": "m", "data": cfg.model_dump(), "model": {"base": "x"}}
    )
    files = build_report(recipe, splits, reports, Tok())["files"]
    assert files[0]["kept"] == 2 and files[0]["dropped"] == 1 and files[0]["why"] == {"also in validation": 1}


def test_relative_paths_stay_under_the_data_root(tmp_path, monkeypatch):
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret.tsv").write_text("sentence\tlabel\nhidden\t1\n")
    (root / "link.tsv").symlink_to(outside / "secret.tsv")
    (root / "inner.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (root / "alias.tsv").symlink_to(root / "inner.tsv")  # a link that stays inside is fine
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(root))
    for name in ("../outside/secret.tsv", "link.tsv", "sub/../../outside/secret.tsv"):
        with pytest.raises(DataError, match="leads outside the data root"):
            resolve_path(name)
    assert resolve_path("alias.tsv") == root / "inner.tsv"
    assert resolve_path(str(outside / "secret.tsv")) == outside / "secret.tsv"  # named absolutely: allowed
    with pytest.raises(DataError, match="is a folder, expected a file"):
        resolve_path(".")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks_are_read(tmp_path, encoding):
    path = tmp_path / "rows.tsv"
    path.write_bytes("sentence\tlabel\ncafé crème\t1\n".encode(encoding))
    assert load_rows(path) == [{"sentence": "café crème", "label": "1"}]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        ("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"), "line 2: not UTF-8 text"),
        (b"sentence\tlabel\n\0\0\0", "line 2: a NUL byte"),
        (b"sentence\tlabel\n" + b"x" * 200_000 + b"\t1\n", "line 2: field larger than field limit"),
    ],
)
def test_unreadable_tables_are_named_without_their_content(tmp_path, content, message):
    path = tmp_path / "rows.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_rows(path)
    assert (
        str(err.value).startswith(str(path)) and "caf" not in str(err.value) and "xxx" not in str(err.value)
    )


def test_labels_and_roles_are_described_not_quoted():
    report = validate_rows(
        [{"sentence": "a", "label": "hunter2"}, {"sentence": "b", "label": float("nan")}], CFG, "f"
    )
    assert [str(i) for i in report.issues] == [
        "f: row 1: label: unknown label: not one of ['negative', 'positive'] nor 0..1",
        "f: row 2: label: missing: nan is not a class (expected 0..1)",
    ]


def test_too_few_rows_to_split(tmp_path, monkeypatch):
    from llmpath.splits import load_splits

    (tmp_path / "one.tsv").write_text("sentence\tlabel\nalone\t1\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="one.tsv: only 1 usable row: too few"):
        load_splits(CFG.model_copy(update={"train": "one.tsv"}))


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_jsonl_rows_may_hold_characters_that_splitlines_breaks_on(tmp_path, separator):
    """Only a newline ends a JSON Lines row: a row whose text holds U+2028, NEL or a form feed raw is one row."""
    from llmpath.files import read_table

    path = tmp_path / "rows.jsonl"
    rows = [{"text": f"one{separator}row", "label": 1}, {"text": "two", "label": 0}]
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert read_table(path) == rows


def test_file_digest_is_remembered_but_follows_a_rewritten_file(tmp_path):
    import hashlib
    import os

    from llmpath.splits import file_digest

    f = tmp_path / "train.tsv"
    f.write_bytes(b"aaaa")
    first = file_digest(f)
    assert first == hashlib.sha256(b"aaaa").hexdigest()
    assert file_digest(f) == first
    st = f.stat()
    f.write_bytes(b"bbbb")  # same size: only the mtime tells the files apart
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_digest(f) == hashlib.sha256(b"bbbb").hexdigest()
