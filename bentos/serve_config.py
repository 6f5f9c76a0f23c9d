"""The serve config: what a recipe's `serve` section says, what the `package` stage writes into a Bento
(bento_config.json) and what its service reads. One schema and one set of defaults for all three: each Bento's
settings module beside its service (`bentos/classifier/classifier_config.py`, `bentos/chat/chat_config.py`,
`bentos/rag/rag_config.py`) defines its settings classes, which are also the recipe's sections, and its Serve
class, which extends them with what packaging fills in. This module is what they share, and nothing of any one
Bento, so editing one Bento's settings changes only the code version of the kinds that serve with it.

- `from_recipe_sections(model, serve, extra)`: the config of a Bento (its Serve class) from the recipe's `serve`
  section and what packaging adds (model tags; rag: the `ask` section and the index's search settings).
- `write(folder, config)` at packaging; `read(folder, model)` in the service. With no file (serving from source
  in the repo) `read` returns the defaults. The model-tag environment variables (`LLMPATH_CLASSIFIER_MODEL`,
  `LLMPATH_CHAT_MODEL`, `LLMPATH_RAG_INDEX`, `LLMPATH_RAG_CHAT`) win over the file, as they always have.

Pydantic only: no llmpath, Prefect or MLflow. It is copied into each Bento beside service.py (like guard.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FILE = "bento_config.json"
NAME = r"^[a-z0-9][a-z0-9._-]*$"


class ServeConfigError(ValueError):
    """A serve config that cannot be used; the message names the file (or the recipe) and the field."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ServeSettings(Settings):
    """What a recipe's `serve` section says, for every llmpath Bento: its name, where it listens and the request
    guard's limits. Each Bento's settings class (in its *_config.py) extends it and is also that recipe
    section (the families and kinds use those classes), so recipe and service share one schema and defaults."""

    bento_name: str = Field(pattern=NAME, description="The Bento's name (`llmpath serve` finds it by it).")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address the service binds to (loopback unless you say so)."
    )
    port: int = Field(3000, gt=0, lt=65536, description="Port the service listens on.")
    max_chars: int = Field(2000, gt=0, description="Longer texts in a request get a 400.")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Larger request bodies get a 413 (guard.py).")
    body_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A request body that takes longer to arrive gets a 408 (guard.py)."
    )


class BaseServe(ServeSettings):
    """The whole config a service reads: its recipe settings plus what packaging fills in."""

    # Model-tag field -> the environment variable that overrides it (a model from the store, served from source).
    TAG_ENV: ClassVar[dict[str, str]] = {}
    # Fields packaging fills in from the store or the index, not from the recipe: left out of the build digest.
    PACKAGED: ClassVar[frozenset[str]] = frozenset()
    # Recipe sections besides `serve` that this Bento reads (each becomes the field of that name).
    SECTIONS: ClassVar[tuple[str, ...]] = ()

    kind: str = Field(
        description="Which Bento's config this is (classify, chat, rag: a Literal in each Bento's Serve class); "
        "a service refuses another Bento's file."
    )

    @property
    def name(self) -> str:
        """The Bento's and the service's name."""
        return self.bento_name

    def settings_json(self) -> str:
        """The config without what packaging fills in (model tags, index settings): what the build digest
        hashes, known before anything is imported into the store."""
        return self.model_dump_json(exclude=set(self.TAG_ENV) | self.PACKAGED)


def from_recipe_sections(model: type[BaseServe], serve: dict[str, Any], extra: dict[str, Any]) -> BaseServe:
    """The config of a `model` Bento (its Serve class) from the recipe's serve section (that Bento's settings
    class, as a plain dict) and `extra`: the model's SECTIONS (rag: `ask`) and what packaging adds (model tags;
    rag: `search_params`, `embed_max_length`). Raises ServeConfigError naming the key."""
    kind = model.model_fields["kind"].default
    return _validate(model, serve | extra, f"the {kind} recipe's serve config")


def write(folder: str | Path, config: BaseServe) -> Path:
    """bento_config.json in `folder` (the Bento's build folder); its path."""
    path = Path(folder) / FILE
    path.write_text(config.model_dump_json(indent=2) + "\n")
    return path


def read(folder: str | Path, model: type[BaseServe]) -> BaseServe:
    """The config beside a service: `folder`/bento_config.json read as `model` (the Bento's Serve class), or
    the defaults when there is none (serving from source), with the model-tag environment variables applied.
    Raises ServeConfigError naming the file and the field."""
    path = Path(folder) / FILE
    data: Any = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ServeConfigError(f"{path}: not a JSON serve config ({err})") from None
        if not isinstance(data, dict):
            raise ServeConfigError(f"{path}: a serve config is a JSON object, not {type(data).__name__}")
    env = {field: os.environ[var] for field, var in model.TAG_ENV.items() if os.environ.get(var)}
    return _validate(model, data | env, str(path))


def _validate(model: type[BaseServe], data: dict, source: str) -> BaseServe:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        # The schema's file: bentos/<bento>/<bento>_config.py in the repo, <bento>_config.py in the Bento.
        schema = model.__module__.replace(".", "/") + ".py"
        problems = []
        for e in err.errors(include_url=False, include_input=False, include_context=False):
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown field (not in {schema})"
            problems.append(f"{key}: {msg}")
        raise ServeConfigError(f"{source}: invalid {model.__name__}: " + "; ".join(problems)) from None
