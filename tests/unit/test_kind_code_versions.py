"""Cache keys carry the code version of the recipe's kind: its package and what it imports. Editing one kind
(or its family) must not invalidate another kind's cached stages; editing the shared core invalidates all."""

import shutil
from pathlib import Path

import pytest

from llmpath.protocol import ROOT, code_files, package_digest

KINDS = {"classify": "llmpath.kinds.classify", "chat": "llmpath.kinds.chat", "rag": "llmpath.kinds.rag"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the source packages, to edit."""
    for name in ("llmpath", "bentos", "tasks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def versions(root: Path) -> dict[str, str]:
    return {kind: package_digest(module, root=root) for kind, module in KINDS.items()}


def touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize(
    "edited, changed",
    [
        ("llmpath/kinds/chat/evaluate.py", {"chat"}),
        ("llmpath/kinds/classify/objective.py", {"classify"}),
        ("llmpath/families/causal_lm/export.py", {"chat"}),  # chat's family (a dpo kind would share it)
        ("llmpath/families/classifier/export.py", {"classify"}),
        ("llmpath/encoder_onnx.py", {"classify"}),  # the ONNX forms classifier and span reader share
        ("bentos/classifier/runtime.py", {"classify"}),  # the runtime parity runs through
        ("llmpath/metrics/generation.py", {"chat"}),  # ROUGE-L
        ("llmpath/metrics/classification.py", {"classify"}),
        ("llmpath/metrics/answers.py", {"rag"}),  # SQuAD EM/F1
        ("llmpath/config.py", {"classify", "chat", "rag"}),  # the core every recipe uses
        # Each Bento's settings (its recipe's serve section, the service's config) are its kinds' only:
        ("bentos/rag/rag_config.py", {"rag"}),  # /ask defaults
        ("bentos/classifier/classifier_config.py", {"classify"}),
        ("bentos/chat/chat_config.py", {"chat"}),  # rag answers with the chat runtime, not the chat Bento
        ("bentos/serve_config.py", {"classify", "chat", "rag"}),  # the base every Bento's settings extend
    ],
)
def test_editing_a_kind_changes_its_version_only(tree, edited, changed):
    before = versions(tree)
    touch(tree / edited)
    after = versions(tree)
    assert {k for k in KINDS if before[k] != after[k]} == changed


@pytest.mark.parametrize(
    "edited, changes",
    [
        ("llmpath/training.py", True),  # the shared loop the finetune stage runs
        ("llmpath/checkpoints.py", True),
        ("llmpath/kinds/chat/objective.py", False),  # a kind's code is the kind's version, not the stage's
        ("tasks/rag.py", False),
    ],
)
def test_a_stage_module_version_covers_what_it_runs(tree, edited, changes):
    before = package_digest("tasks.train", root=tree)
    touch(tree / edited)
    assert (package_digest("tasks.train", root=tree) != before) is changes


def test_the_closure_follows_imports_not_folders():
    classify = {str(p.relative_to(ROOT)) for p in code_files("llmpath.kinds.classify")}
    chat = {str(p.relative_to(ROOT)) for p in code_files("llmpath.kinds.chat")}
    assert "llmpath/classifier.py" in classify and "llmpath/classifier.py" not in chat
    assert "llmpath/causal.py" in chat and "llmpath/causal.py" not in classify
    assert not any(p.startswith(("llmpath/kinds/chat", "tasks/", "flows/")) for p in classify)
    assert "llmpath/cli.py" not in classify | chat  # `from llmpath import x` is x, not the whole package


def test_a_bentos_settings_are_in_its_kinds_closure_only():
    """The closure follows a Bento settings module's `try: import serve_config / except ImportError: from
    bentos import serve_config` (the base is in every kind's), and each settings module is its kinds' only."""
    closure = {k: {str(p.relative_to(ROOT)) for p in code_files(m)} for k, m in KINDS.items()}
    assert all("bentos/serve_config.py" in files for files in closure.values())
    assert "bentos/classifier/classifier_config.py" in closure["classify"]
    assert "bentos/chat/chat_config.py" in closure["chat"]
    assert "bentos/rag/rag_config.py" in closure["rag"]
    assert not {"bentos/chat/chat_config.py", "bentos/rag/rag_config.py"} & closure["classify"]
    assert not {"bentos/classifier/classifier_config.py", "bentos/rag/rag_config.py"} & closure["chat"]
    assert "bentos/classifier/classifier_config.py" not in closure["rag"]


def test_stage_keys_use_the_kind_version(monkeypatch):
    """The real finetune cache key of a classify recipe changes with classify's code version only."""
    from llmpath.kinds.chat import Chat
    from llmpath.kinds.classify import Classify
    from llmpath.recipes import parse_recipe
    from llmpath.results import PreparedData
    from tasks.stages import stage_key
    from tasks.train import finetune

    recipe = parse_recipe(
        {
            "name": "t",
            "registered_model": "t",
            "model": {"base": "packaged:all-minilm-l6-v2"},
            "data": {"train": "t.tsv", "labels": ["neg", "pos"]},
        }
    )
    data = PreparedData(run_id="r", uri="runs:/r/data", fingerprint="f", rows={"train": 1}, base_revision="b")

    def key() -> str:
        return stage_key(finetune, recipe=recipe, data=data)

    before = key()
    monkeypatch.setattr(Chat, "code_version", lambda self: "chat-edited")
    assert key() == before  # another kind edited: classify's cached weights stand
    monkeypatch.setattr(Classify, "code_version", lambda self: "classify-edited")
    assert key() != before  # its own kind edited: it trains again
