"""How far a long loop is, for whoever watches it: the loop calls `update(done, total)` (or iterates through
`track`, which also draws the shell's tqdm bar), and the reporter installed around it with `reporting` hears
the fraction done. No reporter is installed by default, so an update costs a context-variable lookup.

Prefect-free on purpose: the loops live in the core, the kinds and the families; the orchestration layer
installs the reporter that turns updates into a Prefect progress artifact and log lines (tasks/progress.py).
"""

from __future__ import annotations

import builtins
import contextlib
import types
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
# reporter(fraction, detail): fraction of the whole job in [0, 1]; detail says where, e.g. "int8: 3/10 batches".
Reporter = Callable[[float, str], None]


@dataclass(frozen=True)
class _Scope:
    reporter: Reporter
    start: float = 0.0  # the share of the whole job this scope covers: [start, start + span]
    span: float = 1.0
    label: str = ""


# the interpreter's own print, taken when llmpath is imported (before any run patches it)
_BUILTIN_PRINT = builtins.print if isinstance(builtins.print, types.BuiltinFunctionType) else print

_SCOPE: ContextVar[_Scope | None] = ContextVar("llmpath_progress", default=None)


def update(done: float, total: float, unit: str = "") -> None:
    """`done` of `total` units of the current loop are finished (a no-op without a reporter)."""
    scope = _SCOPE.get()
    if scope is None or total <= 0:
        return
    fraction = min(max(done / total, 0.0), 1.0)
    detail = f"{done:g}/{total:g} {unit}".strip()
    scope.reporter(scope.start + scope.span * fraction, f"{scope.label}: {detail}" if scope.label else detail)


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Send the updates of the loops run inside this block to `reporter`."""
    token = _SCOPE.set(_Scope(reporter))
    try:
        yield
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def part(index: int, count: int, label: str = "") -> Iterator[None]:
    """The loop inside this block is part `index` (from 0) of `count` equal parts of the enclosing job, as
    when a parity check measures one exported form after another: its 0..100% maps onto that part."""
    scope = _SCOPE.get()
    if scope is None or count <= 0:
        yield
        return
    span = scope.span / count
    token = _SCOPE.set(_Scope(scope.reporter, scope.start + index * span, span, label or scope.label))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """Iterate `items` with a tqdm bar (for the shell) and an `update` after each item (for the reporter)."""
    from tqdm.auto import tqdm

    if total is None and isinstance(items, Sized):
        total = len(items)
    for done, item in enumerate(tqdm(items, desc=desc, unit=unit, total=total), 1):
        yield item
        if total:
            update(done, total, unit)


@contextlib.contextmanager
def builtin_print() -> Iterator[None]:
    """`print` as the interpreter's own inside the block. A run that forwards prints to its log (Prefect's
    `log_prints`) patches `print`; code that captures its own prints by swapping `sys.stdout` (dill's
    disassembly when `datasets` fingerprints a table) then sends them to the log instead, e.g. pages of bytecode."""
    patched = builtins.print
    builtins.print = _BUILTIN_PRINT
    try:
        yield
    finally:
        builtins.print = patched
