import pytest

from llmpath.cli import main

pytestmark = pytest.mark.unit


def test_validate_reports_bad_recipe_and_exits_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nregistered_model: m\ndata: {train: a.tsv, labels: [a, b]}\nmodel: {base: x}\nlora: {rank: 8}\n"
    )
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"error: {recipe}: invalid recipe" in err and "lora.rank: unknown key" in err


def test_validate_reports_bad_data_by_row(tmp_path, capsys, monkeypatch):
    (tmp_path / "a.tsv").write_text("sentence\tlabel\nfine\t1\n\t0\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nregistered_model: m\nmodel: {base: packaged:all-minilm-l6-v2}\n"
        "data: {train: a.tsv, text_column: sentence, labels: [a, b]}\n"
    )
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    assert main(["validate", str(recipe)]) == 2
    assert "row 2: sentence: empty text" in capsys.readouterr().err


def test_run_refuses_missing_data_before_starting_anything(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nregistered_model: m\nmodel: {base: packaged:all-minilm-l6-v2}\ndata: {train: absent.tsv, labels: [a, b]}\n"
    )
    monkeypatch.delenv("LLMPATH_DATA_DIR", raising=False)
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    assert main(["run", str(recipe)]) == 2
    assert "LLMPATH_DATA_DIR is not set" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()  # nothing was tracked


def test_serve_without_a_bento_says_how_to_build_one(capsys):
    assert main(["serve", "classifier", "--bento", "llmpath-never-built"]) == 2
    assert "No Bento named 'llmpath-never-built' yet" in capsys.readouterr().err


def test_validate_rejects_routing_of_an_unknown_stage(tmp_path, capsys, monkeypatch):
    # good data: the data checks come first
    (tmp_path / "a.tsv").write_text("text\tlabel\nfine\t1\ndull\t0\n")
    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nregistered_model: m\ndata: {train: a.tsv, labels: [a, b]}\nmodel: {base: packaged:all-minilm-l6-v2}\n"
        "routing: {pools: {finetuning: gpu-pool}}\n"
    )
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "routing.pools names unknown stages ['finetuning']" in err and "'finetune'" in err


def test_history_of_a_model_without_moves(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["history", "nothing-here"]) == 1
    assert "no recorded champion moves for 'nothing-here'" in capsys.readouterr().out


def test_gguf_checks_before_starting_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["gguf", "nothing-here", "--min-agreement", "1.5"]) == 2
    assert "min_agreement must be between 0 and 1" in capsys.readouterr().err
    assert main(["gguf", "nothing-here"]) == 2
    err = capsys.readouterr().err
    errors = [
        line for line in err.splitlines() if line.startswith("error:")
    ]  # MLflow logs its store's creation
    assert len(errors) == 1 and "registered model 'nothing-here' has no alias @champion" in errors[0]
