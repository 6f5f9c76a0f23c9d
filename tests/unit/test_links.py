"""Pure logic of what the MLflow and Prefect UIs show: page addresses, run names, artifact keys, dataset names,
descriptions, the summary's links and the compare table."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from llmpath import links
from llmpath.compare import GateRow, table

pytestmark = pytest.mark.unit
UI = "http://127.0.0.1:5000/"


def test_mlflow_pages():
    assert links.run_url(UI, "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert links.logged_model_url(UI, "3", "m-1f") == "http://127.0.0.1:5000/#/experiments/3/models/m-1f"
    # A registered model name is one path segment however it is spelled.
    assert (
        links.version_url(UI, "sst2 clf/x", "4") == "http://127.0.0.1:5000/#/models/sst2%20clf%2Fx/versions/4"
    )
    url = links.compare_url(UI, "3", ["a", "b"])
    assert url.startswith("http://127.0.0.1:5000/#/compare-runs?runs=")
    runs, experiments = (unquote(part.split("=", 1)[1]) for part in url.split("?", 1)[1].split("&"))
    assert json.loads(runs) == ["a", "b"] and json.loads(experiments) == ["3"]


def test_prefect_flow_run_page_only_with_a_server():
    assert links.flow_run_url("http://127.0.0.1:4200/", "f-1") == "http://127.0.0.1:4200/runs/flow-run/f-1"
    assert links.flow_run_url(None, "f-1") is None


def test_markdown_links_escape_table_pipes():
    assert links.md_link("v1", "http://x/#/a") == "[v1](http://x/#/a)"
    assert links.md_link("a|b", None) == "a\\|b"


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("summary", "classify-sst2-smoke"), "summary-classify-sst2-smoke"),
        (("summary", "Chat_Alpaca.ZH v2"), "summary-chat-alpaca-zh-v2"),
        (("summary", "--Ünïcode--"), "summary-n-code"),
        (("",), "artifact"),
    ],
)
def test_artifact_keys_use_only_what_prefect_accepts(parts, key):
    assert links.artifact_key(*parts) == key


def test_artifact_keys_are_bounded_and_per_recipe():
    long = links.artifact_key("summary", "x" * 300)
    assert len(long) <= 100 and set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert links.artifact_key("summary", "classify-a") != links.artifact_key("summary", "classify-b")


def test_run_names_tell_runs_apart_and_follow_prefect():
    # The Prefect flow run's name, when it already names the recipe (with or without its kind's prefix).
    assert links.mlflow_run_name("classify-sst2-smoke", "classify", "sst2-smoke-3f9a") == "sst2-smoke-3f9a"
    assert links.mlflow_run_name("tiny", "classify", "tiny-3f9a") == "tiny-3f9a"
    # Prefect's random names are prefixed with the recipe; a retried flow run gets a new name.
    assert links.mlflow_run_name("classify-sst2-smoke", "classify", "robust-petrel") == (
        "classify-sst2-smoke-robust-petrel"
    )
    assert links.mlflow_run_name("tiny", "classify", "tiny-3f9a", run_count=2) == "tiny-3f9a-try2"
    # No flow run: the recipe, the time and a token.
    now = datetime(2026, 12, 2, 1, 40, 2)
    assert (
        links.mlflow_run_name("tiny", "classify", None, now=now, token="ab12") == "tiny-20261202-014002-ab12"
    )
    assert links.mlflow_run_name("tiny", "classify", None, now=now, token="a") != links.mlflow_run_name(
        "tiny", "classify", None, now=now, token="b"
    )


def test_data_files_are_named_without_the_home_folder(tmp_path):
    root, home = tmp_path / "data", tmp_path / "home"
    assert links.data_label(root / "sst2" / "dev.tsv", root, home) == "sst2/dev.tsv"
    assert links.data_label(home / "mine" / "train.tsv", root, home) == "~/mine/train.tsv"
    assert links.data_label(Path("/srv/train.tsv"), None, home) == "/srv/train.tsv"


def test_model_ids_come_from_logged_model_uris_only():
    assert links.model_id_of("models:/m-0a1b") == "m-0a1b"
    assert links.model_id_of("models:/sst2/1") is None
    assert links.model_id_of("runs:/abc/model") is None and links.model_id_of(None) is None


def test_reused_stages_are_read_back_from_tags():
    from tasks.describe import reused_from

    tags = {
        "reused.finetune.run_id": "r1",
        "reused.finetune.uri": "models:/m-1",
        "reused.prepare_data.run_id": "r0",
        "stage.finetune": "cached: ...",
    }
    assert reused_from(tags) == {"finetune": ("r1", "models:/m-1"), "prepare_data": ("r0", "")}


def test_descriptions_link_the_flow_run_and_name_the_bento():
    from llmpath.recipes import parse_recipe
    from tasks.describe import run_note, version_note

    recipe = parse_recipe(
        {"name": "tiny", "registered_model": "tiny-clf", "data": {"train": "t.tsv", "labels": ["a", "b"]},
         "model": {"base": "/m"}}
    )  # fmt: skip
    tags = {
        "prefect.flow_run_id": "f-1",
        "prefect.flow_run_name": "tiny-0f1e",
        "prefect.flow_run_url": "http://127.0.0.1:4200/runs/flow-run/f-1",
        "reused.finetune.run_id": "0123456789ab",
        "reused.finetune.uri": "models:/m-1",
    }
    summary = {
        "model version": "tiny-clf v2",
        "champion": "2",
        "promotion": "beats",
        "bento": "tiny-bento:xyz",
    }
    urls = {"model version": "http://u/#/models/tiny-clf/versions/2"}
    note = run_note(recipe, summary, tags, urls, UI, "7")
    assert "[tiny-0f1e](http://127.0.0.1:4200/runs/flow-run/f-1)" in note and "`tiny-bento:xyz`" in note
    assert "[tiny-clf v2](http://u/#/models/tiny-clf/versions/2)" in note and "champion: v2" in note
    assert (
        "finetune: run [01234567](http://127.0.0.1:5000/#/experiments/7/runs/0123456789ab), `models:/m-1`"
        in note
    )
    # Without a Prefect server the flow run is named by its id.
    bare = run_note(
        recipe, summary, {"prefect.flow_run_id": "f-1", "prefect.flow_run_name": "n"}, urls, UI, "7"
    )
    assert "Prefect flow run `n` (id `f-1`)" in bare

    vtags = {"run_id": "r1", "recipe": "tiny", "deployable.form": "int8", "deployable.model_uri": "models:/m-9",
             "bento.tag": "tiny-bento:xyz", "promotion.decision": "promoted", "promotion.reason": "beats"}  # fmt: skip
    text = version_note("tiny-clf", "2", vtags, tags, "[run](http://r)", UI, "7")
    assert "`tiny-bento:xyz`" in text and "[tiny-0f1e](http://127.0.0.1:4200/runs/flow-run/f-1)" in text
    assert (
        "[models:/m-9](http://127.0.0.1:5000/#/experiments/7/models/m-9)" in text and "gate: promoted" in text
    )
    assert "not packaged" in version_note("tiny-clf", "2", {}, {}, "run", UI, "7")


def test_summary_rows_link_their_pages():
    from tasks.runs import summary_markdown

    markdown = summary_markdown(
        {"mlflow run": "abc", "model version": "m v1", "base accuracy": 0.5, "bento": "b:1"},
        {"mlflow run": "http://u/#/r", "model version": "http://u/#/v"},
    )
    assert (
        "| mlflow run | [abc](http://u/#/r) |" in markdown
        and "| model version | [m v1](http://u/#/v) |" in markdown
    )
    assert "| base accuracy | 0.5000 |" in markdown and "| bento | b:1 |" in markdown


def test_compare_table_shows_missing_scores_as_dashes():
    rows = [
        GateRow("r1", "tiny-aaaa", datetime(2026, 12, 2, 1, 0), "FINISHED", "1", {"base": 0.5, "candidate": 0.8},
                "promoted"),
        GateRow("r2", "tiny-bbbb", datetime(2026, 12, 2, 2, 0), "FINISHED", "1",
                {"base": 0.5, "candidate": 0.8, "champion": 0.8}, "kept"),
    ]  # fmt: skip
    lines = table(rows, "accuracy").splitlines()
    assert lines[0].split() == [
        "run", "started", "status", "version", "base.accuracy", "candidate.accuracy", "champion.accuracy",
        "decision",
    ]  # fmt: skip
    assert lines[1].split()[-2:] == ["-", "promoted"] and lines[2].split()[-2:] == ["0.8000", "kept"]
