"""The kind registry: every package under `llmpath/kinds/` that defines `KIND`, and the recipe type built from
them (a discriminated union on `kind`, so a form or a validator sees only that kind's sections).

A new kind is a new folder: nothing here names one. A recipe without `kind` is a classify recipe (as it always
was)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError

import llmpath.kinds
from llmpath.config import RecipeBase, RecipeError, format_errors, read_raw_recipe
from llmpath.protocol import Kind

DEFAULT_KIND = "classify"


@cache
def kinds() -> dict[str, Kind]:
    """Every registered kind by name, in the order of their folders."""
    found: dict[str, Kind] = {}
    for info in sorted(pkgutil.iter_modules(llmpath.kinds.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"llmpath.kinds.{info.name}")
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, Kind):
            raise TypeError(f"llmpath/kinds/{info.name}/__init__.py must define KIND, a Kind instance")
        if kind.name in found:
            raise TypeError(f"two kind packages name themselves {kind.name!r}")
        found[kind.name] = kind
    return found


def kind_named(name: str) -> Kind:
    known = kinds()
    if name not in known:
        raise RecipeError(f"kind: unknown kind {name!r}; known: {', '.join(known)}")
    return known[name]


def kind_of(recipe: RecipeBase) -> Kind:
    return kind_named(recipe.kind)


def _default_kind(value: Any) -> Any:
    """A recipe without `kind` is a classify recipe, wherever it is validated (the pipeline's and the remote
    stage's Prefect parameters too, not only `parse_recipe`)."""
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": DEFAULT_KIND}
    return value


def _union():
    classes = tuple(kind.recipe for kind in kinds().values())
    if len(classes) == 1:
        return classes[0]
    union = Annotated[Union[classes], Field(discriminator="kind")]  # noqa: UP007  (a runtime tuple)
    return Annotated[union, BeforeValidator(_default_kind)]


# The recipe type of any kind: use it where a recipe of any kind is accepted (the pipeline, the stage flow).
Recipe = _union()
_ADAPTER = TypeAdapter(Recipe)


def parse_recipe(raw: dict[str, Any], source: str = "<recipe>") -> RecipeBase:
    """Validate a recipe dict as its kind's recipe class; errors name the file and every wrong key."""
    if isinstance(raw, dict):
        raw = dict(raw)
        kind = raw.setdefault("kind", DEFAULT_KIND)
        if not isinstance(kind, str) or kind not in kinds():
            # The value is not quoted: an error names the key, never what the file says there.
            raise RecipeError(
                f"{source}: invalid recipe: kind: not a known kind; known: {', '.join(kinds())}"
            )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as err:
        classes = {name: kind.recipe for name, kind in kinds().items()}
        raise RecipeError(format_errors(source, err, classes)) from None
    except RecursionError:
        raise RecipeError(f"{source}: invalid recipe: nested too deeply") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeBase:
    """Read a recipe file, apply `--set` overrides and validate it."""
    return parse_recipe(read_raw_recipe(path, overrides), str(path))


def recipe_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) of every leaf key of a recipe class, sections walked in order."""
    out = []
    for name, info in model.model_fields.items():
        sections = [a for a in (info.annotation, *get_args(info.annotation)) if _is_section(a)]
        if sections:
            many = get_origin(info.annotation) is list
            out += recipe_fields(sections[0], f"{prefix}{name}{'[]' if many else ''}.")
            continue
        if info.is_required():
            default = "(required)"
        elif info.default_factory is not None:
            default = repr(info.default_factory())
        else:
            default = repr(info.default)
        out.append((prefix + name, default, info.description or ""))
    return out


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
