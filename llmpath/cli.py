"""`llmpath`: run and validate recipes, serve the champion's Bento."""

from __future__ import annotations

import argparse
import sys

from llmpath import settings

settings.apply_defaults()


def _recipe(args):
    from llmpath.recipes import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    settings.set_hub_access(recipe.uses_hub)
    return recipe


def _check_routing(recipe) -> None:
    """The recipe's routing names stages that exist (importing the stages imports Prefect; starts nothing)."""
    import tasks.catalog  # noqa: F401  (declares the stages routing may name)
    from tasks.runner import validate_routing

    validate_routing(recipe)


def cmd_validate(args) -> int:
    """Check a recipe and its data without training."""
    from llmpath.checks import check_inputs

    recipe = _recipe(args)
    check_inputs(recipe)  # before Prefect is imported: its import alone may warn on stderr
    _check_routing(recipe)
    from llmpath.recipes import kind_of

    print(f"{args.recipe}: recipe OK ({recipe.kind}, model {recipe.model.base})")
    checked = kind_of(recipe).check_data(recipe)
    print(checked.markdown)
    for issue in checked.issues[:20]:
        print(f"  {issue}")
    for report in checked.reports:
        for issue in report.issues[:20]:
            print(f"  {issue}")
        if len(report.issues) > 20:
            print(f"  ... and {len(report.issues) - 20} more in {report.file}")
    print(f"{checked.subject} OK. Next: llmpath run " + args.recipe)
    return 0


def _cache_option(args) -> None:
    if getattr(args, "no_cache", False):
        import os

        os.environ["PREFECT_TASKS_REFRESH_CACHE"] = "true"  # compute every stage, refresh the cache


def _use_stack() -> None:
    """Runs started from the shell show in the stack's Prefect UI when `llmpath up` is running."""
    from llmpath import remote

    url = remote.use_stack()
    if url:
        print(f"Prefect API: {url} (the flow run shows in its UI)")


def cmd_run(args) -> int:
    """Run the recipe's flow under Prefect."""
    from llmpath.checks import check_inputs

    recipe = _recipe(args)
    check_inputs(recipe)  # the checks `validate` makes, in its order, before Prefect or MLflow start
    _check_routing(recipe)
    _cache_option(args)
    _use_stack()
    from flows import FLOWS
    from llmpath.recipes import kind_of

    summary = FLOWS[recipe.kind](recipe)
    service = kind_of(recipe).family.bento.service
    print(f"Next: `llmpath serve {service}` to serve the champion; `make mlflow-ui` to compare runs.")
    return 0 if summary else 1


def cmd_pipeline(args) -> int:
    """Run several recipes as one release (the `pipeline` flow) and print its summary."""
    from llmpath.checks import check_inputs
    from llmpath.recipes import load_recipe

    recipes = [load_recipe(path, args.set) for path in args.recipes]
    settings.set_hub_access(any(r.uses_hub for r in recipes))
    for recipe in recipes:
        check_inputs(recipe)
        _check_routing(recipe)
    _cache_option(args)
    _use_stack()
    from flows.pipeline import pipeline

    pipeline(recipes)
    return 0


def cmd_promote(args) -> int:
    """Point MODEL@champion at VERSION (recorded in the alias history)."""
    _use_stack()
    from flows.promote import promote

    if promote(args.model, args.version, args.reason, force=args.force):
        print(
            f"Next: rebuild the Bento for the new champion (llmpath run RECIPE); history: llmpath history {args.model}"
        )
    return 0


def cmd_rollback(args) -> int:
    """Move MODEL@champion back to the version before the last recorded move."""
    _use_stack()
    from flows.promote import rollback

    rollback(args.model, args.reason)
    print(
        f"Next: rebuild the Bento for the new champion (llmpath run RECIPE); history: llmpath history {args.model}"
    )
    return 0


def cmd_gguf(args) -> int:
    """Write a chat model's version (its champion by default) as GGUF files for llama.cpp and Ollama, each
    checked against the version's greedy tokens, and attach them to the version."""
    from tasks.gguf import check_exportable

    check_exportable(args.model, args.version, args.alias, args.forms, args.min_agreement)  # before Prefect
    _use_stack()
    from flows.gguf import gguf

    scores = gguf(args.model, args.version, args.alias, args.forms, args.min_agreement, args.probes)
    for form, s in scores.items():
        verdict = "attached" if s["top1_agreement"] >= args.min_agreement else "below the floor, not attached"
        print(f"{form}: {s['size_mb']:.0f} MB, top-1 agreement {s['top1_agreement']:.3f} ({verdict})")
    print(
        "Next: the files are artifacts of the gguf run (MLflow UI, version tags gguf.*); "
        "README 'GGUF: llama.cpp and Ollama' shows how to run them"
    )
    return 0


def cmd_history(args) -> int:
    """Print every recorded move of MODEL@champion: who, when, why, and the version's metric."""
    from tasks import aliases

    moves = aliases.history(args.model)
    if not moves:
        print(f"no recorded champion moves for {args.model!r}")
        return 1
    metric = args.metric
    if metric is None:  # the gate metric of this model's kind: the one its versions were scored on
        recorded = {key for move in moves for key in move.metrics}
        gates = ("accuracy", "macro_f1", "rouge_l", "call_accuracy", "recall_at_5")
        metric = next((m for m in gates if f"eval.{m}" in recorded), "accuracy")
    print(aliases.table(moves, metric))
    return 0


def cmd_compare(args) -> int:
    """Print base vs candidate vs champion on the recipe's gate metric across its runs; write a chart."""
    from pathlib import Path

    from llmpath import compare

    recipe = _recipe(args)
    metric = args.metric or recipe.eval.metric
    experiment_id, rows = compare.gate_rows(recipe.experiment_name, metric, args.runs)
    if not rows:
        print(
            f"no runs of {recipe.name} yet (experiment {recipe.experiment_name!r}): llmpath run {args.recipe}"
        )
        return 1
    print(compare.table(rows, metric))
    print(f"MLflow UI: {compare.compare_url(experiment_id, rows)}")
    if not args.no_chart:
        path = Path(args.chart or f"{recipe.name}-compare.png")
        compare.chart(rows, metric, path, f"{recipe.name}: {metric} by run")
        print(f"chart: {path}")
    return 0


def cmd_trigger(args) -> int:
    """Run a recipe through its deployment on a running stack (see `llmpath up`) and wait for it."""
    from llmpath import remote

    recipe = _recipe(args)
    return remote.trigger(recipe, wait=not args.no_wait)


def services() -> dict[str, tuple[str, str]]:
    """`llmpath serve` names: each family's Bento -> (the smoke recipe of the first kind that builds it, its
    routes)."""
    from llmpath.recipes import kinds

    out: dict[str, tuple[str, str]] = {}
    for kind in kinds().values():
        out.setdefault(kind.family.bento.service, (kind.smoke_recipe, kind.family.bento.routes))
    return out


def cmd_serve(args) -> int:
    """Serve the champion's Bento of a service on 127.0.0.1 (unless --host says otherwise)."""
    import os
    import subprocess

    from llmpath.served import NothingToServe, champion_bento

    name = args.bento or f"llmpath-{args.service}"
    recipe, routes = services()[args.service]
    try:
        tag, model, version = champion_bento(name, f"llmpath run recipes/{recipe}")
    except NothingToServe as err:
        print(str(err), file=sys.stderr)
        return 2
    print(f"serving {tag} ({model}@champion v{version}) on http://{args.host}:{args.port}")
    print(f"  {routes}, GET /healthz /readyz /metrics")
    cmd = ["bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    return subprocess.call([os.path.join(os.path.dirname(sys.executable), cmd[0]), *cmd[1:]])


def cmd_kinds(args) -> int:
    """List the recipe kinds (with --fields KIND: every key of that kind's recipe, its default and meaning)."""
    from llmpath.recipes import kind_named, kinds, recipe_fields

    if args.fields:
        for key, default, description in recipe_fields(kind_named(args.fields).recipe):
            print(f"{key} = {default}  # {description}" if description else f"{key} = {default}")
        return 0
    for name, kind in kinds().items():
        print(f"{name:10} {kind.family.name:20} recipes/{kind.smoke_recipe}  {kind.summary}")
    print("Next: llmpath kinds --fields KIND lists every key of a kind's recipe")
    return 0


def cmd_gc(args) -> int:
    """List what killed runs and old builds left (scratch folders, index copies, unreferenced Milvus
    collections and Bentos); drop them with --yes."""
    from llmpath import gc
    from llmpath.families.index import vectors
    from llmpath.families.index.config import IndexConfig

    items, notes = gc.find(vectors.milvus_uri(IndexConfig()))
    for note in notes:
        print(f"note: {note}")
    if not items:
        print("nothing to collect")
        return 0
    for item in items:
        print(f"{'dropping' if args.yes else 'would drop'} {item.kind}: {item.name} ({item.why})")
        if args.yes:
            gc.drop(item)
    if not args.yes:
        print(f"dry run: nothing dropped. `llmpath gc --yes` drops these {len(items)}.")
    return 0


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=2"
    )


def _no_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-cache", action="store_true", help="compute every stage again (and refresh the cache)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmpath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("run", cmd_run), ("validate", cmd_validate), ("trigger", cmd_trigger)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("recipe", help="recipe YAML, e.g. recipes/classify-sst2-smoke.yaml")
        _set_option(p)
        if name == "run":
            _no_cache_option(p)
        if name == "trigger":
            p.add_argument("--no-wait", action="store_true", help="return once the flow run is created")
        p.set_defaults(func=func)
    p = sub.add_parser("compare", help=cmd_compare.__doc__)
    p.add_argument("recipe", help="recipe YAML whose runs to compare")
    _set_option(p)
    p.add_argument("--metric", help="the metric to compare (default: the recipe's gate metric)")
    p.add_argument("--runs", type=int, default=50, help="the latest N runs (default 50)")
    p.add_argument("--chart", metavar="PNG", help="where the chart goes (default: RECIPE_NAME-compare.png)")
    p.add_argument("--no-chart", action="store_true", help="print the table only")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("pipeline", help=cmd_pipeline.__doc__)
    p.add_argument("recipes", nargs="+", help="recipe YAML files, run in this order")
    _set_option(p)
    _no_cache_option(p)
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("promote", help=cmd_promote.__doc__)
    p.add_argument("model", help="registered model name, e.g. sst2-classifier")
    p.add_argument("version")
    p.add_argument("--reason", required=True, help="why (kept in the alias history)")
    p.add_argument("--force", action="store_true", help="allow a version without a deployable form")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("rollback", help=cmd_rollback.__doc__)
    p.add_argument("model")
    p.add_argument("--reason", required=True, help="why (kept in the alias history)")
    p.set_defaults(func=cmd_rollback)
    p = sub.add_parser("gguf", help=cmd_gguf.__doc__)
    p.add_argument("model", help="registered chat model, e.g. smollm2-alpaca-smoke")
    p.add_argument("--version", help="the version to export (default: the one --alias names)")
    p.add_argument("--alias", default="champion", help="used when --version is not given (default champion)")
    p.add_argument("--forms", nargs="+", default=["f16", "q8_0"], choices=["f16", "q8_0"])
    p.add_argument("--min-agreement", type=float, default=0.95, help="top-1 agreement a form needs to ship")
    p.add_argument("--probes", type=int, default=16, help="recorded candidate answers to check against")
    p.set_defaults(func=cmd_gguf)
    p = sub.add_parser("history", help=cmd_history.__doc__)
    p.add_argument("model")
    p.add_argument("--metric", default=None, help="the eval metric column to show (default: the gate's)")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("serve", help=cmd_serve.__doc__)
    p.add_argument("service", choices=sorted(services()))
    p.add_argument("--bento", help="Bento name (default: llmpath-SERVICE)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("kinds", help=cmd_kinds.__doc__)
    p.add_argument("--fields", metavar="KIND", help="print every key of this kind's recipe")
    p.set_defaults(func=cmd_kinds)
    p = sub.add_parser("gc", help=cmd_gc.__doc__)
    p.add_argument("--yes", action="store_true", help="drop them (default: list what would go)")
    p.set_defaults(func=cmd_gc)
    from llmpath import stack

    stack.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from llmpath.config import RecipeError
    from llmpath.data import DataError
    from llmpath.locks import RegistryBusy
    from llmpath.sources import ModelSourceError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RecipeError, DataError, ModelSourceError, LookupError, ValueError, RegistryBusy) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException, limit: int = 2000) -> str:
    """An error as one line of bounded length: a message that spans lines or grows with its input is a
    message no one reads (and a log line that hides what follows)."""
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
