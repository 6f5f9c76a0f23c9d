"""The recipe deployments of prefect.yaml: one per shipped recipe (`recipes/<kind>-<name>.yaml` is
`<kind>/<name>`, e.g. `classify/sst2-smoke`) with the validated recipe as its default parameter, so the Prefect
UI's Run > Quick run needs no typing, Custom run opens a filled form, and `POST /deployments/{id}/create_flow_run`
needs no body.

They are checked in, between marker lines of prefect.yaml, so `prefect deploy --all` by hand deploys them as
`llmpath up` does: the recipes' parameters in `definitions.recipes` (YAML anchors; each kind's flow deployment
takes its smoke recipe's as default) and the deployments at the end of `deployments`. Write them with
`make deployments` (`python -m llmpath.stack.deployments`); `--check` exits 1 when they differ from recipes/,
`tests/unit/test_recipe_deployments.py` fails then, and `llmpath up` says so.

A default is the recipe as validated (`model_dump(mode="json", exclude_unset=True)`: what the file sets, in the
schema's types; what it leaves out keeps the code's default, as with `llmpath run`). Data paths stay relative:
workers resolve them against their own LLMPATH_DATA_DIR.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmpath.stack.procs import REPO_ROOT

PARAMETERS = (
    "  # >>> recipe parameters: generated from recipes/ by `make deployments`; edit the recipes, not these\n",
    "  # <<< recipe parameters\n",
)
DEPLOYMENTS = (
    "  # >>> recipe deployments: generated from recipes/ by `make deployments`; edit the recipes, not these\n",
    "  # <<< recipe deployments\n",
)


class DeploymentsError(ValueError):
    """prefect.yaml lacks its markers, or two recipes would get one deployment name."""


@dataclass(frozen=True)
class RecipeDeployment:
    path: Path  # recipes/<file>.yaml
    recipe: object  # the validated recipe

    @property
    def kind(self) -> str:
        return self.recipe.kind

    @property
    def name(self) -> str:
        """The deployment's name under its flow: the recipe's name without its kind's prefix."""
        from tasks.flowrun import short_name

        return short_name(self.recipe)

    @property
    def anchor(self) -> str:
        return self.recipe.name

    def parameters(self) -> dict:
        return {"recipe": self.recipe.model_dump(mode="json", exclude_unset=True)}

    def description(self) -> str:
        """`recipes/<file>`: the file's leading comment (what the recipe is for, its arithmetic)."""
        lines = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
        about = " ".join(x for x in lines if x)
        return f"recipes/{self.path.name}: {about}" if about else f"recipes/{self.path.name}"

    def tags(self) -> list[str]:
        from tasks.flowrun import run_tags

        return ["llmpath", "pipeline", *run_tags(self.recipe)]


def recipe_deployments(recipes_dir: Path = REPO_ROOT / "recipes") -> list[RecipeDeployment]:
    """Every recipe file, validated, in file-name order; names unique per flow."""
    from llmpath.recipes import load_recipe

    found = [RecipeDeployment(p, load_recipe(p)) for p in sorted(recipes_dir.glob("*.yaml"))]
    seen: dict[str, Path] = {}
    for d in found:
        full = f"{d.kind}/{d.name}"
        if full in seen:
            raise DeploymentsError(f"{d.path} and {seen[full]} would both be the deployment {full}")
        if d.name == d.kind:
            raise DeploymentsError(
                f"{d.path}: a recipe named {d.kind!r} would replace the {d.kind} deployment"
            )
        seen[full] = d.path
    return found


class _Dumper(yaml.SafeDumper):
    """Block mappings, and lists of plain values on one line (`target_modules: [query, value]`), as recipes
    are written."""

    def represent_list(self, data):
        flat = all(isinstance(x, str | int | float | bool) or x is None for x in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and bool(data))


_Dumper.add_representer(list, _Dumper.represent_list)


def _dump(value: object, indent: int) -> str:
    text = yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False
    )
    pad = " " * indent
    return "".join(f"{pad}{line}\n" if line else "\n" for line in text.splitlines())


def parameters_block(found: list[RecipeDeployment]) -> str:
    out = "  recipes:\n"
    for d in found:
        out += f"    {d.anchor}: &{d.anchor}\n" + _dump(d.parameters(), 6)
    return out


def deployments_block(found: list[RecipeDeployment]) -> str:
    out = ""
    for d in found:
        head = {"name": d.name, "description": d.description(), "entrypoint": f"flows/{d.kind}.py:{d.kind}"}
        out += _dump([head], 2)
        out += f"    tags: [{', '.join(d.tags())}]\n"
        out += "    work_pool: *cpu_pool\n"
        out += f"    parameters: *{d.anchor}\n\n"
    return out.rstrip("\n") + "\n"


def _replace(text: str, markers: tuple[str, str], body: str) -> str:
    begin, end = markers
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise DeploymentsError(f"prefect.yaml needs the marker lines {begin.strip()!r} and {end.strip()!r}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return head + begin + body + end + tail


def render(text: str, found: list[RecipeDeployment]) -> str:
    """prefect.yaml's text with both generated blocks written from `found`."""
    text = _replace(text, PARAMETERS, parameters_block(found))
    return _replace(text, DEPLOYMENTS, deployments_block(found))


def stale(prefect_yaml: Path = REPO_ROOT / "prefect.yaml", recipes_dir: Path = REPO_ROOT / "recipes") -> bool:
    """Whether prefect.yaml's generated blocks differ from what recipes/ gives now."""
    text = prefect_yaml.read_text(encoding="utf-8")
    return render(text, recipe_deployments(recipes_dir)) != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmpath.stack.deployments", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if prefect.yaml is not up to date")
    parser.add_argument("--prefect-yaml", type=Path, default=REPO_ROOT / "prefect.yaml")
    parser.add_argument("--recipes", type=Path, default=REPO_ROOT / "recipes")
    args = parser.parse_args(argv)
    text = args.prefect_yaml.read_text(encoding="utf-8")
    found = recipe_deployments(args.recipes)
    new = render(text, found)
    if args.check:
        if new != text:
            print(
                f"{args.prefect_yaml}: recipe deployments out of date: run `make deployments`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.prefect_yaml}: {len(found)} recipe deployments, up to date")
        return 0
    if new != text:
        args.prefect_yaml.write_text(new, encoding="utf-8")
    names = ", ".join(f"{d.kind}/{d.name}" for d in found)
    print(f"{args.prefect_yaml}: {len(found)} recipe deployments ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
