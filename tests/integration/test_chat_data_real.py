"""`llmpath validate` on the chat recipes' real data (SmolLM2's template): the chat data report, and bad chat rows
refused by row and field before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpath.cli import main

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_validate_chinese_recipe_reports_conversations_and_truncation(shared_data, capsys):
    assert main(["validate", str(ROOT / "recipes" / "chat-alpaca-zh.yaml")]) == 0
    out = capsys.readouterr().out
    assert "# Data report (chat)" in out and "alpaca_zh_demo.json | 1000 |" in out
    train = next(line for line in out.splitlines() if line.startswith("| train |"))
    cells = [c.strip() for c in train.strip("|").split("|")]
    assert cells[1] == "600" and cells[2] == "1200"  # 600 sampled conversations of one user + one answer turn
    # Cut conversations are exactly max_length long (768): the longest row says so.
    truncated, longest = int(cells[-1].split()[0]), float(cells[4].split("/")[-1])
    assert cells[-1].endswith("truncated") and truncated > 0 and longest == 768


def test_validate_tool_call_recipe_reads_glaive_tools_calls_and_results(shared_data, capsys):
    assert main(["validate", str(ROOT / "recipes" / "chat-toolcall.yaml")]) == 0
    out = capsys.readouterr().out
    assert (
        "glaive_toolcall_en_demo.json | 300 | 264 | 36 |" in out
    )  # 35 duplicates, 1 call failing its schema
    assert "a function call's arguments fail its tool's schema: 1" in out
    calls = next(line for line in out.splitlines() if line.startswith("Assistant turns with tool calls:"))
    train, validation = (int(n) for n in calls.replace(",", "").split()[-3::2])
    assert train > 100 and validation > 15  # held-out calls for call_accuracy


def test_bad_chat_rows_are_named_and_the_run_refused(tmp_path, capsys, monkeypatch):
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(20)
    ]
    rows[3]["messages"][1]["role"] = "bot"
    rows[7] = {"messages": [{"role": "assistant", "content": "answer first"}]}
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nkind: chat\nregistered_model: m\nmodel: {base: packaged:smollm2-135m-instruct}\n"
        "data: {train: chat.jsonl}\n"
    )
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "2 of 20 rows invalid" in err
    assert "row 4: messages[1].role: bad role: expected one of" in err
    assert "row 8: messages: bad role order: the conversation must start with a user turn" in err
