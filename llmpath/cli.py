"""`llmpath`: run and validate recipes, serve the last built Bento."""

from __future__ import annotations

import argparse
import sys

from llmpath import settings

settings.apply_defaults()


def _recipe(args):
    from llmpath.config import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    settings.set_hub_access(recipe.uses_hub)
    return recipe


def _check_sources(recipe) -> None:
    """Cheap checks before Prefect and MLflow start: data files exist and the base model resolves."""
    from llmpath.data import resolve_path
    from llmpath.sources import resolve_model

    if not recipe.data.hub:
        for name in filter(None, (recipe.data.train, recipe.data.validation)):
            resolve_path(name)
    resolve_model(recipe.model.base, recipe.model.revision)


def cmd_validate(args) -> int:
    """Check a recipe and its data without training."""
    from tasks.data import check_data, report_markdown

    recipe = _recipe(args)
    print(f"{args.recipe}: recipe OK ({recipe.kind}, model {recipe.model.base})")
    _, reports, report, _ = check_data(recipe)
    print(report_markdown(report, recipe.model.max_length))
    for report in reports:
        for issue in report.issues[:20]:
            print(f"  {issue}")
        if len(report.issues) > 20:
            print(f"  ... and {len(report.issues) - 20} more in {report.file}")
    print("Data OK. Next: llmpath run " + args.recipe)
    return 0


def cmd_run(args) -> int:
    """Run the recipe's flow under Prefect."""
    recipe = _recipe(args)
    _check_sources(recipe)
    from flows import FLOWS

    summary = FLOWS[recipe.kind](recipe)
    print("Next: `llmpath serve classifier` to serve the champion; `make mlflow-ui` to compare runs.")
    return 0 if summary else 1


def cmd_serve(args) -> int:
    """Serve the most recent Bento of a service on 127.0.0.1 (unless --host says otherwise)."""
    import os
    import subprocess

    import bentoml
    from bentoml.exceptions import NotFound

    name = args.bento or f"llmpath-{args.service}"
    try:
        bentos = sorted(bentoml.list(name), key=lambda b: b.info.creation_time)
    except NotFound:
        bentos = []
    if not bentos:
        print(
            f"No Bento named {name!r} yet. Build one: llmpath run recipes/classify-sst2-smoke.yaml",
            file=sys.stderr,
        )
        return 2
    tag = str(bentos[-1].tag)
    print(f"serving {tag} on http://{args.host}:{args.port}  (POST /classify, GET /healthz /readyz /metrics)")
    cmd = ["bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    return subprocess.call([os.path.join(os.path.dirname(sys.executable), cmd[0]), *cmd[1:]])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmpath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("run", cmd_run), ("validate", cmd_validate)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("recipe", help="recipe YAML, e.g. recipes/classify-sst2-smoke.yaml")
        p.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=2"
        )
        p.set_defaults(func=func)
    p = sub.add_parser("serve", help=cmd_serve.__doc__)
    p.add_argument("service", choices=["classifier"])
    p.add_argument("--bento", help="Bento name (default: llmpath-SERVICE)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from llmpath.config import RecipeError
    from llmpath.data import DataError
    from llmpath.sources import ModelSourceError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RecipeError, DataError, ModelSourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
