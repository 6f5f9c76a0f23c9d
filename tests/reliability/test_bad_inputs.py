"""Bad recipes and bad data through the real CLI (`llmpath validate` and `llmpath run` as subprocesses).

Each case plants a unique marker in the bad file (or in the file it points at) and asserts: exit code 2, one
`error:` line on stderr that names the file and the row or key, no traceback, the marker nowhere in the output
(errors describe contents, never quote them), and nothing tracked: no MLflow run, no version, and for `run` no
Prefect database (the checks happen before Prefect or MLflow start)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

LLMPATH = str(Path(sys.executable).with_name("llmpath"))
MARK = f"SECRET-{uuid.uuid4().hex}"  # planted in every bad file; must never be printed

CLASSIFY = f"""# {MARK}
name: bad
registered_model: bad-model
model: {{base: packaged:all-minilm-l6-v2, max_length: MAXLEN}}
data: {{train: TRAIN, text_column: sentence, labels: [negative, positive]DATA}}
"""
CHAT = f"""# {MARK}
name: bad-chat
kind: chat
registered_model: bad-chat-model
model: {{base: packaged:smollm2-135m-instruct}}
data: {{train: TRAIN}}
"""
DPO = f"""# {MARK}
name: bad-dpo
kind: dpo
registered_model: bad-dpo-model
model: {{base: packaged:smollm2-135m-instruct}}
data: {{train: TRAIN}}
"""
RAG = f"""# {MARK}
name: bad-rag
kind: rag
registered_model: bad-index
model: {{base: packaged:all-minilm-l6-v2}}
corpus: {{sources: [{{path: SOURCE}}]CORPUS}}
"""


def classify(train: str = "train.tsv", extra: str = "", data: str = "", max_length: int = 64) -> str:
    recipe = CLASSIFY.replace("TRAIN", train).replace("DATA", data).replace("MAXLEN", str(max_length))
    return recipe + extra


def chat(train: str) -> str:
    return CHAT.replace("TRAIN", train)


def dpo(train: str) -> str:
    return DPO.replace("TRAIN", train)


def pair(prompt: str = "Hi?", chosen: str = "Hello!", rejected: str = "Go away.") -> dict:
    return {
        "conversations": [{"from": "human", "value": prompt}],
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": rejected},
    }


def rag(source: str, corpus: str = "") -> str:
    return RAG.replace("SOURCE", source).replace("CORPUS", corpus)


def tsv(*rows: str) -> str:
    return "sentence\tlabel\n" + "".join(f"{row}\n" for row in rows)


@dataclass(frozen=True)
class Case:
    id: str
    recipe: str | bytes | None  # None: the recipe path is made by `setup` (or absent)
    names: tuple[str, ...]  # what the one error line must mention: the file, the row or key, the problem
    files: dict[str, str | bytes] = field(default_factory=dict)  # under tmp: data/... or outside/...
    links: dict[str, str] = field(default_factory=dict)  # symlink (under tmp) -> target (under tmp)
    unreadable: str | None = None  # a path under tmp whose permissions are removed
    recipe_name: str = "recipe.yaml"
    run: bool = False  # also through `llmpath run` (a representative subset: each costs a process)


def squad(paragraphs) -> str:
    return json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": paragraphs}]})


LONG = "Super Bowl 50 was an American football game to determine the champion of the league. " * 2
ALIAS_BOMB = f"a: &a ['{MARK}', x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES = [
    # ---- the recipe file itself
    Case("recipe-yaml-syntax", classify(extra=f"train: {{epochs: 2\n  {MARK}: [}}\n"), ("recipe.yaml", "line 7", "not valid YAML"), run=True),
    Case("recipe-is-a-list", f"- {MARK}\n- two\n", ("recipe.yaml", "mapping", "not a list")),
    Case("recipe-is-a-scalar", f"{MARK}\n", ("recipe.yaml", "mapping", "not a str")),
    Case("recipe-empty", "", ("recipe.yaml", "empty file")),
    Case("recipe-alias-bomb", ALIAS_BOMB, ("recipe.yaml", "line 2", "aliases"), run=True),
    Case("recipe-nested-deep", classify(extra="train: " + "[" * 50000 + f"'{MARK}'" + "]" * 50000 + "\n"), ("recipe.yaml", "line 6", "nested more than")),
    Case("recipe-duplicate-key", classify(extra=f"name: '{MARK}'\n"), ("recipe.yaml", "line 6", "'name' appears twice")),
    Case("recipe-unknown-kind", classify(extra=f"kind: {MARK}\n"), ("recipe.yaml", "kind: not a known kind", "known: chat, classify, dpo, pretrain, qa, rag")),
    Case("recipe-wrong-type", classify(extra=f"train: {{batch_size: '{MARK}'}}\n"), ("recipe.yaml", "train.batch_size", "integer"), run=True),
    Case("recipe-unknown-key", classify(extra="lora: {rank: 8}\n"), ("recipe.yaml", "lora.rank: unknown key")),
    Case("recipe-negative-steps", classify(extra="train: {max_steps: -5}\n"), ("recipe.yaml", "train.max_steps", "greater than 0")),
    Case("recipe-zero-batch", classify(extra="train: {batch_size: 0}\n"), ("recipe.yaml", "train.batch_size", "greater than 0")),
    Case("recipe-nan-learning-rate", classify(extra="train: {learning_rate: .nan}\n"), ("recipe.yaml", "train.learning_rate", "finite"), run=True),
    Case("recipe-huge-max-length", classify(max_length=10**12), ("recipe.yaml", "model.max_length", "less than or equal to 4096")),
    Case("recipe-huge-integer", classify(extra="train: {max_steps: " + "9" * 5000 + "}\n"), ("recipe.yaml", "line 6", "integer too long")),
    Case("recipe-latin-1", (classify() + f"# café {MARK}\n").encode("latin-1"), ("recipe.yaml", "line 6", "not UTF-8")),
    Case("recipe-binary", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + MARK.encode(), ("recipe.yaml", "NUL byte")),
    Case("recipe-missing", None, ("absent.yaml", "not found"), recipe_name="absent.yaml"),
    Case("recipe-not-readable", classify(), ("recipe.yaml", "cannot read", "Permission denied"), unreadable="recipe.yaml"),
    Case("recipe-is-a-folder", None, ("recipes.d", "is a folder"), files={"recipes.d/x.yaml": MARK}, recipe_name="recipes.d"),
    # ---- data files of classify recipes
    Case("data-dotdot-escape", classify("../outside/secret.tsv"), ("../outside/secret.tsv", "outside the data root"), files={"outside/secret.tsv": tsv(f"{MARK}\t1")}, run=True),
    Case("data-symlink-escape", classify("link.tsv"), ("link.tsv", "outside the data root"), files={"outside/secret.tsv": tsv(f"{MARK}\t1")}, links={"data/link.tsv": "outside/secret.tsv"}, run=True),
    Case("data-passwd-as-table", classify("OUTSIDE/passwd", data=", format: tsv"), ("passwd", "column(s) ['sentence', 'label'] not found"), files={"outside/passwd": f"root:x:0:0:{MARK}:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n"}, run=True),
    Case("data-missing-file", classify("absent.tsv"), ("absent.tsv", "not found")),
    Case("data-is-a-folder", classify("sst2"), ("sst2", "is a folder"), files={"data/sst2/train.tsv": tsv(f"{MARK}\t1")}),
    Case("data-not-readable", classify(), ("train.tsv", "permission denied"), files={"data/train.tsv": tsv(f"{MARK}\t1")}, unreadable="data/train.tsv"),
    Case("data-empty-file", classify("empty.tsv"), ("empty.tsv", "empty file"), files={"data/empty.tsv": ""}),
    Case("data-binary", classify(), ("train.tsv", "line 1", "NUL byte"), files={"data/train.tsv": b"PK\x03\x04\0\0" + MARK.encode()}, run=True),
    Case("data-latin-1", classify(), ("train.tsv", "line 2", "not UTF-8"), files={"data/train.tsv": tsv(f"café {MARK}\t1").encode("latin-1")}),
    Case("data-missing-column", classify(), ("train.tsv", "column(s) ['sentence'] not found"), files={"data/train.tsv": f"{MARK}\tlabel\nfine\t1\n"}),
    Case("data-nan-labels", classify(), ("train.tsv", "row 1: label", "max_invalid_fraction"), files={"data/train.tsv": tsv(*(f"{MARK} {i}\tnan" for i in range(5)))}, run=True),
    Case("data-label-out-of-range", classify(), ("train.tsv", "row 1: label: unknown label 7"), files={"data/train.tsv": tsv(*(f"{MARK} {i}\t7" for i in range(5)))}),
    Case("data-label-unknown-name", classify(), ("train.tsv", "row 1: label: unknown label"), files={"data/train.tsv": tsv(*(f"text {i}\t{MARK}" for i in range(5)))}),
    Case("data-huge-single-line", classify(), ("train.tsv", "line 2", "field larger than field limit"), files={"data/train.tsv": tsv(MARK + "x" * 300_000 + "\t1")}),
    Case("data-ragged-row", classify(), ("train.tsv", "line 3", "3 fields, the header has 2"), files={"data/train.tsv": tsv("fine\t1", f"{MARK}\t1\textra")}),
    Case("data-header-only", classify(), ("train.tsv", "no data rows"), files={"data/train.tsv": tsv()}),
    Case("data-one-row", classify(), ("train.tsv", "only 1 usable row", "data.validation"), files={"data/train.tsv": tsv(f"{MARK}\t1")}),
    Case("data-unknown-suffix", classify("data.xlsx"), ("data.xlsx", "unknown file type", "data.format"), files={"data/data.xlsx": MARK}),
    Case("data-hub-offline", classify("train", data=", hub: llmpath-absent/none"), ("hub:llmpath-absent/none[train]", "data.hub")),
    Case("data-unicode-file-name", classify("'données ✓.tsv'"), ("données ✓.tsv", "row 1: sentence: empty text"), files={"data/données ✓.tsv": tsv(*(f"\t{i % 2}" for i in range(4)), f"{MARK}\t1")}),
    # ---- chat data
    Case("chat-nested-json", chat("train.json"), ("train.json", "nested too deeply"), files={"data/train.json": "[" * 100_000 + f'"{MARK}"' + "]" * 100_000}, run=True),
    Case("chat-bad-role", chat("train.json"), ("train.json", "row 1: messages[0].role: bad role"), files={"data/train.json": json.dumps([{"messages": [{"role": MARK, "content": "hi"}, {"role": "assistant", "content": "a"}]}] * 3)}),
    Case("chat-bad-jsonl-line", chat("train.jsonl"), ("train.jsonl", "line 2", "not valid JSON"), files={"data/train.jsonl": '{"instruction": "a", "output": "b"}\n' + f'{{"instruction": "{MARK}", \n'}),
    Case("chat-object-not-list", chat("train.json"), ("train.json", "expected a list of objects"), files={"data/train.json": json.dumps({MARK: []})}),
    # ---- dpo preference pairs
    Case("dpo-missing-rejected", dpo("pairs.json"), ("pairs.json", "row 1: rejected: missing", "max_invalid_fraction"), files={"data/pairs.json": json.dumps([{k: v for k, v in pair(MARK).items() if k != "rejected"}] * 3)}, run=True),
    Case("dpo-same-answers", dpo("pairs.json"), ("pairs.json", "row 1: rejected: same as chosen"), files={"data/pairs.json": json.dumps([pair(f"q{i}", MARK, MARK) for i in range(3)])}),
    Case("dpo-prompt-ends-with-answer", dpo("pairs.json"), ("pairs.json", "row 1: conversations: bad role order: the prompt must end with a user turn"), files={"data/pairs.json": json.dumps([pair(f"q{i}") | {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": MARK}]} for i in range(3)])}),
    Case("dpo-bad-role", dpo("pairs.json"), ("pairs.json", "row 1: conversations[0].from: bad role"), files={"data/pairs.json": json.dumps([pair(f"q{i}") | {"conversations": [{"from": MARK, "value": "a"}]} for i in range(3)])}),
    # ---- rag corpora
    Case("squad-malformed-qas", rag("dev.json"), ("dev.json", "row 1: data[0].paragraphs[0].qas", "no evaluation questions"), files={"data/dev.json": squad([{"context": LONG, "qas": MARK}])}, run=True),
    Case("squad-no-paragraphs", rag("dev.json"), ("dev.json", "data[0].paragraphs: missing"), files={"data/dev.json": json.dumps({"data": [{"title": "T", "paragraphs": MARK}]})}),
    Case("squad-not-json", rag("dev.json"), ("dev.json", "line 1", "not valid JSON"), files={"data/dev.json": "{'" + MARK}),
    Case("corpus-chunks-too-short", rag("docs.jsonl", ", min_chars: 500"), ("docs.jsonl", "corpus.min_chars (500)"), files={"data/docs.jsonl": "".join(json.dumps({"text": f"{MARK} {i}"}) + "\n" for i in range(3))}, run=True),
    Case("corpus-symlink-escape", rag("docs"), ("leak.md", "symlink", "not read"), files={"data/docs/good.md": LONG, "outside/secret.md": f"# {MARK}\n\n{MARK} {LONG}"}, links={"data/docs/leak.md": "outside/secret.md"}, run=True),
    Case("corpus-dotdot-escape", rag("../outside"), ("../outside", "outside the data root"), files={"outside/secret.md": f"{MARK} {LONG}"}),
]  # fmt: skip


def build(case: Case, tmp: Path) -> Path:
    """The case's data root, outside folder, links and recipe under tmp; returns the recipe path."""
    for folder in ("data", "outside", "home", "prefect"):
        (tmp / folder).mkdir()
    for name, content in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for link, target in case.links.items():
        (tmp / link).symlink_to(tmp / target)
    recipe = tmp / case.recipe_name
    if case.recipe is not None:
        text = (
            case.recipe
            if isinstance(case.recipe, bytes)
            else case.recipe.replace("OUTSIDE", str(tmp / "outside"))
        )
        recipe.write_bytes(text if isinstance(text, bytes) else text.encode())
    if case.unreadable:
        (tmp / case.unreadable).chmod(0)
    return recipe


def llmpath(command: str, recipe: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "LLMPATH_HOME": str(tmp / "home"),
        "LLMPATH_DATA_DIR": str(tmp / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'home' / 'mlflow.db'}",
        "PREFECT_HOME": str(tmp / "prefect"),
        # Offline, and said so (as on these machines): a hub recipe must fail at once, in one line.
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"),
    }
    return subprocess.run(
        [LLMPATH, command, str(recipe)], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )


def assert_nothing_tracked(tmp: Path, command: str) -> None:
    """No MLflow run left RUNNING and no model version in the store (if it was created at all); `run` did not
    even start Prefect (its database is created when its server starts)."""
    db = tmp / "home" / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("select count(*) from runs where status = 'RUNNING'").fetchone() == (0,)
            assert conn.execute("select count(*) from model_versions").fetchone() == (0,)
    assert not (tmp / "home" / "mlruns").exists(), "the embedded MLflow store was created"
    if command == "run":
        assert not (tmp / "prefect" / "prefect.db").exists(), "llmpath run started Prefect"


def check(case: Case, command: str, tmp: Path) -> str:
    """Run one command on the case; returns its error line."""
    if case.unreadable and os.geteuid() == 0:
        pytest.skip("root reads any file: permissions cannot be taken away")
    recipe = tmp / case.recipe_name if (tmp / "data").exists() else build(case, tmp)
    result = llmpath(command, recipe, tmp)
    output = result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert len(lines[0]) < 2100, lines[0][:300]
    for name in case.names:
        assert name in lines[0], f"{name!r} not in: {lines[0]}"
    assert MARK not in output, f"the file's contents leaked into the output: {output[-1000:]}"
    assert_nothing_tracked(tmp, command)
    return lines[0]


def test_there_are_enough_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert sum(c.run for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_validate_refuses_in_one_line(case, tmp_path):
    check(case, "validate", tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c.run], ids=lambda c: c.id)
def test_run_refuses_in_the_same_line_before_starting_anything(case, tmp_path):
    assert check(case, "run", tmp_path) == check(case, "validate", tmp_path)
