"""The release summary the `pipeline` flow ends with: one row per recipe, read back from the registry."""

from __future__ import annotations

from llmpath import settings, tracking
from llmpath.recipes import Recipe
from tasks.registry import CANDIDATE, CHAMPION, alias_version


def run_link(run_id: str) -> str:
    import mlflow

    experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    return f"{settings.mlflow_ui_url()}/#/experiments/{experiment}/runs/{run_id}"


def release_rows(recipes: list[Recipe], summaries: list[dict]) -> list[dict]:
    """What each recipe left behind, as the registry says now (aliases, forms, Bento tags)."""
    import mlflow

    tracking.configure()
    client = mlflow.MlflowClient()
    rows = []
    for recipe, summary in zip(recipes, summaries, strict=True):
        name = recipe.registered_model
        champion = alias_version(name, CHAMPION)
        tags = client.get_model_version(name, champion).tags if champion else {}
        rows.append(
            {
                "recipe": recipe.name,
                "kind": recipe.kind,
                "model": name,
                "candidate": alias_version(name, CANDIDATE),
                "champion": champion,
                "deployable form": tags.get("deployable.form"),
                "index collection": summary.get("index collection"),
                "bento": tags.get("bento.tag"),
                "mlflow run": run_link(summary["mlflow run"]),
            }
        )
    return rows


def release_table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["# Release summary", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"v{v}" if k in ("candidate", "champion") and v else (v or "-") for k, v in row.items()]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
