"""Reading the files a recipe names, safely: a relative path stays under the data root (symlinks resolved), text
is decoded strictly, JSON nesting is bounded by what Python can parse, and tables are read with the standard
library so every cell stays as written.

Every error names the file and the problem, never the file's contents: a recipe can name any file (absolute
paths are allowed), and an error line ends up in terminals, CI logs and the Prefect UI.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from llmpath import settings

TABLE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


class DataError(ValueError):
    """Data that cannot be used; the message names file, row and field."""


class UnreadableFile(DataError):
    """A file that cannot be read as text; `problem` says why without the path (for per-file reports)."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def inside(path: Path, *roots: Path | None) -> bool:
    """Whether `path` (resolved) lies in one of the (resolved) roots."""
    return any(root is not None and path.is_relative_to(root) for root in roots)


def resolve_path(name: str, what: str = "data file", folders: bool = False) -> Path:
    """A recipe path, resolved (symlinks followed): absolute anywhere, or relative to the data root
    (`LLMPATH_DATA_DIR`) and then inside it. A file, or with `folders` a file or a folder."""
    given = Path(name).expanduser()
    if given.is_absolute():
        shown, path = given, given.resolve()  # named absolutely: the user chose this place
    else:
        root = settings.data_root()
        if root is None:
            raise DataError(
                f"{what} {name!r} is relative but LLMPATH_DATA_DIR is not set; "
                "point it at your datasets folder or use an absolute path"
            )
        shown, path = root / given, (root / given).resolve()
        if not inside(path, root):
            raise DataError(
                f"{what} {name!r} leads outside the data root {root} (through '..' or a symlink); "
                "a file elsewhere must be named by its absolute path"
            )
    if not path.exists():
        raise DataError(f"{what} not found: {shown}")
    if path.is_dir():
        if not folders:
            raise DataError(f"{what} {shown}: is a folder, expected a file")
    elif not path.is_file():
        raise DataError(f"{what} {shown}: not a regular file (a device, socket or pipe)")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise DataError(f"{what} {shown}: permission denied")
    return path


def decode(raw: bytes, path: Path) -> str:
    """UTF-8 (a UTF-8 byte-order mark is dropped) or UTF-16 with its byte-order mark; anything else is refused
    with the line of the first bad byte."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as err:
            raise UnreadableFile(path, f"byte {err.start}: not valid UTF-16 text; save it as UTF-8") from None
    raw = raw.removeprefix(codecs.BOM_UTF8)
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise UnreadableFile(
            path, f"line {line}: a NUL byte: binary data, not text (or UTF-16 without a byte-order mark)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise UnreadableFile(
            path,
            f"line {line}: not UTF-8 text (byte {err.start}; latin-1 or another encoding?); save it as UTF-8",
        ) from None


def read_text(path: Path) -> str:
    """The text of a file; empty files and unreadable ones are errors that say why."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UnreadableFile(path, f"cannot read it ({err.strerror or type(err).__name__})") from None
    if not raw.strip():
        raise UnreadableFile(path, "empty file")
    return decode(raw, path)


def parse_json(text: str, path: Path, line: int | None = None) -> Any:
    """json.loads whose errors name the file and line, and survive hostile nesting and number sizes."""
    where = f"line {line}: " if line else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = f"line {line or err.lineno}"
        raise DataError(f"{path}: {at}: not valid JSON ({err.msg}, column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{path}: {where}JSON nested too deeply to read; rows are flat objects") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise DataError(f"{path}: {where}a JSON value cannot be read ({type(err).__name__})") from None


def _json_rows(text: str, path: Path, fmt: str) -> list[Any]:
    if fmt == "json":
        try:
            rows = parse_json(text, path)
        except DataError as err:
            if "Extra data" not in str(err):  # several values: JSON lines in a .json file
                raise
        else:
            if not isinstance(rows, list):
                raise DataError(
                    f"{path}: expected a list of objects (one per row), got a {type(rows).__name__}"
                )
            return rows
    return [parse_json(line, path, n) for n, line in enumerate(json_lines(text), start=1) if line.strip()]


def json_lines(text: str) -> list[str]:
    """The lines of a JSON Lines file. Only `\n` ends a row (a `\r` before it is JSON whitespace): a JSON string
    may hold U+2028, U+0085 or a form feed raw, where `str.splitlines()` would cut the row in two."""
    return text.split("\n")


def _delimited_rows(text: str, path: Path, fmt: str) -> list[dict[str, Any]]:
    # SST-2 and friends are unquoted: a literal `"` inside a TSV sentence must not start a quoted field.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    rows: list[dict[str, Any]] = []
    try:
        header = next((r for r in reader if r), None)
        if header is None:
            raise DataError(f"{path}: no header row")
        for record in reader:
            if not record:  # a blank line
                continue
            if len(record) > len(header):
                raise DataError(
                    f"{path}: could not be read as {fmt}: line {reader.line_num}: {len(record)} fields, "
                    f"the header has {len(header)}; check the separator (data.format)"
                )
            row: dict[str, Any] = {}
            for i, column in enumerate(header):
                row.setdefault(column, record[i] if i < len(record) else None)  # a repeated name: the first
            rows.append(row)
    except csv.Error as err:  # its messages say what, never the text: "field larger than field limit", ...
        raise DataError(f"{path}: could not be read as {fmt}: line {reader.line_num}: {err}") from None
    return rows


def read_table(path: Path, fmt: str = "auto") -> list[Any]:
    """The rows of a TSV/CSV (header row), JSON (a list of objects or JSON lines), JSONL or Parquet file, each
    cell as written (no NA or type guessing). Rows are usually dicts; JSON may hold anything (checked later)."""
    if fmt == "auto":
        fmt = TABLE_FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            raise DataError(
                f"{path}: unknown file type; set data.format ({', '.join(TABLE_FORMATS.values())})"
            )
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow's messages describe the bytes it met; the type says enough
            raise DataError(
                f"{path}: not a readable Parquet file ({type(err).__name__}); set data.format"
            ) from None
    text = read_text(path)
    if fmt in ("json", "jsonl"):
        return _json_rows(text, path, fmt)
    return _delimited_rows(text, path, fmt)
