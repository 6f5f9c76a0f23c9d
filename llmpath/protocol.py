"""The protocol every recipe kind and every artifact family implements (core: both layers import it).

A **kind** (classify, chat, rag, ...) is a package under `llmpath/kinds/` whose `__init__` defines `KIND`, an
instance of a `Kind` subclass. It owns its recipe class (a `RecipeBase` with `kind: Literal[...]`), its data
checks and preparation, its training objective, its evaluation and which family its artifact belongs to.
A **family** (sequence classifier, causal LM, index) is a package under `llmpath/families/` whose `__init__`
defines `FAMILY`: export, parity and the Bento, shared by every kind that produces that artifact.

Kinds never import each other; both sit below the stages, so neither imports Prefect nor `tasks`: a stage
(`tasks/<stage>.py`) is the Prefect shell that calls them and publishes what they return.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from bentos.serve_config import BaseServe
from llmpath.config import RecipeBase
from llmpath.results import Evaluation, ExportedModel, ParityResult, PreparedData, TrainedModel

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("llmpath", "bentos", "tasks")  # the packages a code version follows imports into


def _module_files(name: str, whole: bool = False, root: Path = ROOT) -> list[Path]:
    """The source file of a first-party module; of a package, its `__init__.py` (`whole`: every file in it);
    [] for a name that is not a module (`from package.module import name` also yields `package.module.name`)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        if not whole:
            return [base / "__init__.py"]
        return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
    file = base.with_suffix(".py")
    return [file] if file.is_file() else []


def _imports(path: Path, package: str) -> frozenset[str]:
    """First-party modules a file imports (at the top or inside functions), resolved to module names. Parsed
    once per version of the file (a stage computes its cache key for every call)."""
    stat = path.stat()
    return _parsed_imports(path, package, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(path: Path, package: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in FIRST_PARTY)
    return frozenset(found)


def code_files(*modules: str, root: Path = ROOT) -> list[Path]:
    """Every first-party source file the named modules (packages: all their modules) reach through imports.
    A stage's code version is their digest: what a kind does not import cannot change its results."""
    seen: dict[Path, None] = {}
    todo = [(name, True) for name in modules]
    visited: set[tuple[str, bool]] = set()
    while todo:
        name, whole = todo.pop()
        if (name, whole) in visited:
            continue
        visited.add((name, whole))
        for path in _module_files(name, whole, root):
            if path in seen:
                continue
            seen[path] = None
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            package = ".".join(rel.parts[:-1])
            todo.extend(
                (m, False) for m in _imports(path, package if rel.name != "__init__" else ".".join(parts))
            )
    return sorted(seen)


def package_digest(*modules: str, root: Path = ROOT) -> str:
    """Digest of `code_files(*modules)`, by path and content: the code version a stage's cache key carries.
    Editing one kind's package changes the digest of that kind only."""
    digest = hashlib.sha256()
    for path in code_files(*modules, root=root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CheckedData:
    """What a kind's data check found (no training): kept items per split, per-file reports, the report dict,
    its Markdown rendering and the resolved base model."""

    splits: dict[str, list]
    reports: list
    report: dict
    markdown: str
    base: Any
    issues: list = field(default_factory=list)  # row issues not in `reports` (rag: the corpus's)
    subject: str = "Data"  # what was checked, for `llmpath validate`: "Data OK", "Corpus OK"


class Objective(Protocol):
    """How one kind trains: `build` the model (with its adapter) and tokenizer; `length` of a row for grouping;
    `loss` of a batch (and its token count); `merged` weights to register. An object, so it may hold state (a
    DPO reference model)."""

    task: str  # the MLflow transformers flavour's task

    def build(self, recipe, base_path: Path, device): ...

    def length(self, row: dict) -> int: ...

    def loss(self, model, tokenizer, batch: list[dict], recipe, device): ...

    def merged(self, model, recipe, base_path: Path, adapter_dir: Path): ...


@dataclass(frozen=True)
class BentoSpec:
    """A family's Bento: its folder under bentos/, the files copied from it (name in the Bento -> file under
    bentos/), the service class, its serve config's class and the packages it needs beyond the shared ones."""

    folder: str
    files: tuple[str, ...]
    service_class: str
    # The Bento's Serve class, defined beside its service (bentos/chat/chat_config.py: ChatServe): packaging
    # validates the recipe's sections with it and copies its module's file into the Bento.
    config: type[BaseServe]
    routes: str = ""  # what `llmpath serve` prints, e.g. "POST /classify"
    borrowed: dict[str, str] = field(default_factory=dict)  # name in the Bento -> path under bentos/
    packages: tuple[str, ...] = ()

    @property
    def service(self) -> str:
        """The name `llmpath serve` knows the Bento by (its folder): classifier, chat, rag."""
        return self.folder


class Family:
    """An artifact family: how a model of this family is exported, checked against PyTorch, and served."""

    name: ClassVar[str]
    module: ClassVar[str]  # the family's package
    bento: ClassVar[BentoSpec]

    def export(self, recipe, trained: TrainedModel, run_id: str) -> ExportedModel:
        raise NotImplementedError(f"the {self.name} family exports nothing")

    def export_key(self, recipe) -> dict:
        """The recipe's slice that decides the exported files."""
        return {}

    def parity(
        self, recipe, data: PreparedData, exported: ExportedModel, candidate: Evaluation, run_id: str
    ) -> ParityResult:
        raise NotImplementedError(f"the {self.name} family has no parity check")

    def parity_key(self, recipe) -> dict:
        return {}

    def import_models(self, recipe, labels: dict[str, str], tags: dict[str, str]) -> dict | None:
        """Put what the Bento serves into the BentoML model store; return the serve config's model entries
        (tags), plus `extra_packages`. None (the default): the version's deployable ONNX folder, as one model."""
        return None

    def bento_inputs(self, recipe) -> dict:
        """Recipe sections that decide what goes into the Bento beyond its serve config (part of its digest)."""
        return {}


class Kind:
    """A recipe kind. Subclasses set the class attributes and implement what their flow runs. A kind that trains
    runs the shared stages (flows/recipe.py: prepare_data, finetune, evaluate_*, register, gate, export, parity,
    package, promote) and implements the data, objective and evaluation methods below; one that does not (rag)
    has a flow of its own over stages of its own (tasks/<kind>.py)."""

    name: ClassVar[str]
    module: ClassVar[str]  # the kind's package
    recipe: ClassVar[type[RecipeBase]]
    family: ClassVar[Family]
    summary: ClassVar[str] = ""  # one line for `llmpath kinds` and the docs
    # The file under recipes/ that runs this kind in minutes (the contract test, `llmpath serve` hints).
    smoke_recipe: ClassVar[str]

    # ---- before anything starts (llmpath validate / run / pipeline): no Prefect, no MLflow, no model
    def check_inputs(self, recipe) -> None:
        """Every file resolves and reads, with few enough bad rows; raise with one line (file, row, field)."""

    # ---- data
    def check_data(self, recipe) -> CheckedData:
        raise NotImplementedError

    def prepare(self, recipe, run_id: str) -> tuple[PreparedData, str]:
        """Write the prepared splits to the run; return the reference and the data report (Markdown)."""
        raise NotImplementedError

    def data_key(self, recipe) -> dict:
        """The recipe's slice that decides the prepared data (beyond the data section and the files)."""
        return {}

    def data_files(self, recipe) -> dict[str, str]:
        """Each data file the prepared data reads -> what identifies its content (a digest; a hub dataset's id)."""
        from llmpath import data as d
        from llmpath.splits import file_digest

        cfg = recipe.data
        names = filter(None, (cfg.train, cfg.validation))
        # A hub dataset is named, not hashed: pin its revision in the id if it must not move.
        return {n: f"hub:{cfg.hub}" if cfg.hub else file_digest(d.resolve_path(n)) for n in names}

    def base_model(self, recipe):
        """The base weights (a folder `from_pretrained` loads) that training starts from and evaluation scores
        as `base`: the recipe's `model.base` resolved; a kind that trains from scratch builds its own."""
        from llmpath.sources import resolve_model

        return resolve_model(recipe.model.base, recipe.model.revision)

    # ---- training
    def objective(self, recipe) -> Objective:
        raise NotImplementedError

    def train_key(self, recipe) -> dict:
        """The recipe's slice (beyond model, lora and train) that decides the trained weights."""
        return {}

    # ---- evaluation and the gate
    def evaluate(self, recipe, data: PreparedData, run_id: str, name: str, model_dir: Path, base: bool):
        """Score one model (the base, or the merged candidate) on the validation split."""
        raise NotImplementedError

    def eval_key(self, recipe) -> dict:
        return {}

    def compare(self, recipe, base: Evaluation, candidate: Evaluation, run_id: str) -> None:
        """Log what the gate weighs, side by side (optional)."""

    def code_version(self) -> str:
        """The kind's package and everything it imports (its family, the core it uses): what the cache key of
        each stage that runs this kind's code carries."""
        return package_digest(self.module)
