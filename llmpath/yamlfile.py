"""YAML config files read safely: small, strictly decoded, no aliases, no repeated keys, bounded nesting; every
error names the place (file, line, column) and the problem, never the text found there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmpath.files import DataError, decode


class YamlFileError(ValueError):
    """A YAML file that cannot be read; the message names the file and the place."""


MAX_BYTES = 1 << 20
MAX_DEPTH = 32  # a recipe is three levels deep; anything far deeper is a mistake or an attack


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML, stricter: no aliases (a "billion laughs" file of a few lines expands to gigabytes), no key
    twice in one mapping (YAML keeps the last one silently) and bounded nesting (the composer recurses)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise _Refused(mark, "YAML aliases (*name) are not allowed here; write the value out")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(mark, f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise _Refused(
                        key_node.start_mark, f"key {key_node.value!r} appears twice in one mapping"
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses to parse integers of more than 4300 digits
            raise _Refused(node.start_mark, "an integer too long to read") from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


class _Refused(Exception):
    def __init__(self, mark, problem: str):
        super().__init__(problem)
        self.mark, self.problem = mark, problem


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML strictly. Errors name the place (line, column) and the problem, never the text there: PyYAML's
    own messages quote the offending line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Refused as err:
        raise YamlFileError(f"{source}: {_where(err.mark)}{err.problem}") from None
    except yaml.MarkedYAMLError as err:
        problem = err.problem or err.context or "not valid YAML"
        raise YamlFileError(f"{source}: {_where(err.problem_mark)}not valid YAML ({problem})") from None
    except yaml.YAMLError as err:  # a reader error: a control character or an invalid code point
        position = getattr(err, "position", None)
        where = f"line {text.count(chr(10), 0, position) + 1}: " if isinstance(position, int) else ""
        raise YamlFileError(f"{source}: {where}not valid YAML (a control character; remove it)") from None
    except (ValueError, RecursionError) as err:  # an integer of more than 4300 digits, ...
        raise YamlFileError(f"{source}: a value cannot be read ({type(err).__name__})") from None


def read_small_text(path: Path, what: str = "recipe") -> str:
    """The text of a small config file: readable, at most 1 MiB, UTF-8 (or UTF-16 with a byte-order mark)."""
    if not path.exists():
        raise YamlFileError(f"{path}: {what} file not found")
    if path.is_dir():
        raise YamlFileError(f"{path}: is a folder; name a {what} YAML file")
    if not path.is_file():
        raise YamlFileError(f"{path}: not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlFileError(
            f"{path}: cannot read the {what} ({err.strerror or type(err).__name__})"
        ) from None
    if len(raw) > MAX_BYTES:
        raise YamlFileError(f"{path}: over {MAX_BYTES >> 20} MiB; a {what} is a small YAML file")
    if not raw.strip():
        raise YamlFileError(f"{path}: empty file; a {what} is a YAML mapping")
    try:
        return decode(raw, path)
    except DataError as err:
        raise YamlFileError(str(err)) from None
