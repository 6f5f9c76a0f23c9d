"""Shared fixtures. Everything writes under pytest's temp dirs: no test touches the user's stores."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest


def _session_dir(prefix: str) -> str:
    """A temp folder for this test session, removed when it ends (a chat Bento alone is half a gigabyte)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


# Before any library import: offline, quiet, and a private BentoML store for the whole session.
if "BENTOML_HOME" not in os.environ:
    os.environ["BENTOML_HOME"] = _session_dir("llmpath-test-bentoml-")
# Prefect's persisted results and cache records of this session stay out of ~/.prefect.
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = _session_dir("llmpath-test-prefect-results-")
os.environ.pop("MLFLOW_TRACKING_URI", None)
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"

from llmpath import settings  # noqa: E402

settings.apply_defaults()

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh project home: its own embedded MLflow store in tmp/mlruns."""
    monkeypatch.setenv("LLMPATH_HOME", str(tmp_path))
    monkeypatch.delenv("LLMPATH_ARTIFACT_ROOT", raising=False)
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; a previous test's store must not leak in.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (LLMPATH_DATA_DIR). CI sets LLMPATH_REQUIRE_DATA: there a missing folder fails."""
    value = os.environ.get("LLMPATH_DATA_DIR")
    if not value or not (Path(value) / "sst2" / "train.tsv").is_file():
        if os.environ.get("LLMPATH_REQUIRE_DATA"):
            pytest.fail(f"LLMPATH_DATA_DIR={value!r} has no sst2/train.tsv (LLMPATH_REQUIRE_DATA is set)")
        pytest.skip("set LLMPATH_DATA_DIR to the datasets folder (with sst2/) to run the tests on real data")
    return Path(value)


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-dim BERT built from a config (random init, no download) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from llmpath.sources import resolve_model

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-minilm-l6-v2").path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def smoke_run(flow, recipe_file: str, tmp_path_factory):
    """Run one of the repository's recipes through its flow in a fresh home; yields (recipe, summary, seconds)."""
    from llmpath.recipes import load_recipe

    mp = pytest.MonkeyPatch()
    mp.setenv("LLMPATH_HOME", str(tmp_path_factory.mktemp("home")))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load_recipe(ROOT / "recipes" / recipe_file)
    started = time.perf_counter()
    summary = flow(recipe)
    try:
        yield recipe, summary, time.perf_counter() - started
    finally:
        mp.undo()


@contextlib.contextmanager
def serving(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout=90.0
):
    """Run a server command (it is given `--port`) on a free loopback port until it answers /readyz; yields its
    base URL, and stops its whole process group afterwards (SIGKILL if SIGTERM is not enough)."""
    import signal
    import subprocess

    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=cwd,
            env=os.environ | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log, timeout)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def llmpath_serve(service: str, tmp_path_factory, timeout: float = 90.0):
    """`llmpath serve SERVICE` (the Bento its champion names) on a free port; yields its base URL."""
    import sys

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    return serving([str(Path(sys.executable).with_name("llmpath")), "serve", service], log, timeout=timeout)


def bentoml_serve(target: str, env: dict[str, str], log: Path, timeout: float = 120.0, cwd: Path = ROOT):
    """`bentoml serve TARGET` (e.g. `bentos.chat.service:Chat`, or a Bento tag) from `cwd` on a free port, with
    `env` added; yields its base URL."""
    import sys

    return serving(
        [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"], log, env, cwd, timeout
    )


@pytest.fixture(scope="session")
def tiny_chat_model(smollm2_tokenizer, tmp_path_factory) -> str:
    """A tiny random Llama over SmolLM2's vocabulary, exported to ONNX with KV cache and its tokenizer, in the
    session's BentoML store (what the chat Bento serves); its tag."""
    import bentoml
    from optimum.onnxruntime import ORTModelForCausalLM

    work = tmp_path_factory.mktemp("tiny-chat")
    make_tiny_llama(smollm2_tokenizer).save_pretrained(work / "model", safe_serialization=True)
    ORTModelForCausalLM.from_pretrained(work / "model", export=True, use_cache=True).save_pretrained(
        work / "onnx"
    )
    smollm2_tokenizer.save_pretrained(work / "onnx")
    with bentoml.models.create("tiny-chat-onnx", labels={"registered_model": "tiny-chat"}) as model:
        shutil.copytree(work / "onnx", model.path, dirs_exist_ok=True)
    return str(model.tag)


@contextlib.contextmanager
def serve_tiny_chat(tag: str, tmp_path_factory):
    """The chat service of this checkout on the tiny chat model; yields its base URL."""
    log = tmp_path_factory.mktemp("chat-serve") / "serve.log"
    with bentoml_serve("bentos.chat.service:Chat", {"LLMPATH_CHAT_MODEL": tag}, log) as base:
        yield base


# A few passages with their metadata: what the rag pages and tests search and answer from.
TINY_PASSAGES = [
    ("Super_Bowl_50", "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers 24-10."),
    (
        "Super_Bowl_50",
        "The game was played on February 7, 2016, at Levi's Stadium in Santa Clara, California.",
    ),
    ("Beyoncé", "Beyoncé sang at the halftime show, with Coldplay and Bruno Mars."),
    ("超级碗", "超级碗是美国国家橄榄球联盟每年一度的冠军赛。"),
    ("Weather", "The weather in Santa Clara was sunny and mild on game day."),
]


@pytest.fixture(scope="session")
def tiny_rag_models(tiny_bert, tiny_chat_model, tmp_path_factory) -> dict[str, str]:
    """A rag index of TINY_PASSAGES (the tiny BERT as its embedder, a Milvus Lite file, the manifest packaging
    writes) and the tiny chat model, in the session's BentoML store: the environment that points
    `bentos.rag.service:Rag` at them. No flow, no registry: seconds, not minutes."""
    import json

    import bentoml

    from bentos.rag.runtime import Embedder
    from llmpath.families.index import vectors
    from llmpath.families.index.config import IndexConfig

    chunks = [
        {"id": f"p{i}", "text": text, "source": "tiny.jsonl", "doc_id": f"tiny.jsonl#{i}", "title": title}
        | {"position": 0}
        for i, (title, text) in enumerate(TINY_PASSAGES)
    ]
    embedder = Embedder(tiny_bert, "torch", max_length=64)
    cfg = IndexConfig(type="FLAT", metric="COSINE")
    record = {
        "collection": "tiny_passages",
        "embedder": "tiny-bert",
        "embedder_revision": "random-init",
        "embedder_backend": "torch",
        "max_length": 64,
        "dim": embedder.dim,
        "metric": cfg.metric,
        "index_type": cfg.type,
        "index_params": vectors.build_params(cfg),
    }
    with bentoml.models.create("tiny-rag-index", labels={"registered_model": "tiny-rag"}) as model:
        folder = Path(model.path)
        shutil.copytree(tiny_bert, folder / "embedder")
        with vectors.connect(str(folder / "milvus.db")) as client:
            vectors.create_collection(client, "tiny_passages", record["dim"], cfg, record)
            vectors.upsert_chunks(
                client, "tiny_passages", chunks, embedder.encode([c["text"] for c in chunks])
            )
        manifest = record | {"uri": "milvus.db", "rows": len(chunks), "search_params": {}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return {"LLMPATH_RAG_INDEX": str(model.tag), "LLMPATH_RAG_CHAT": tiny_chat_model}


@contextlib.contextmanager
def serve_tiny_rag(models: dict[str, str], tmp_path_factory):
    """The rag service of this checkout on `tiny_rag_models`; yields its base URL."""
    log = tmp_path_factory.mktemp("rag-serve") / "serve.log"
    with bentoml_serve("bentos.rag.service:Rag", models, log) as base:
        yield base


def wait_ready(base: str, proc, log: Path, timeout: float = 90.0) -> None:
    """Poll `bentoml serve`'s /readyz until it answers; fail with the server's log if it exits or times out."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"bentoml serve exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"bentoml serve not ready in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def write_sentiment_tsv(path: Path, n: int, seed: int = 0) -> Path:
    """A separable toy sentiment set: positive rows use positive words, negative rows negative ones."""
    import random

    rng = random.Random(seed)
    good, bad = (
        ["great", "wonderful", "superb", "moving", "delightful"],
        ["awful", "dull", "boring", "bad", "tedious"],
    )
    nouns = ["film", "story", "cast", "plot", "ending", "score", "script"]
    lines = ["sentence\tlabel"]
    seen = set()
    while len(lines) <= n:
        label = rng.randint(0, 1)
        words = rng.sample(good if label else bad, 2)
        text = f"a {words[0]} and {words[1]} {rng.choice(nouns)} {rng.randint(0, 10**6)}"
        if text not in seen:
            seen.add(text)
            lines.append(f"{text}\t{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def no_dropout_bert(tiny_bert, tmp_path_factory):
    """The tiny BERT without dropout: runs that cut batches differently draw the same (no) random masks."""
    out = tmp_path_factory.mktemp("tiny-bert-nodrop")
    shutil.copytree(tiny_bert, out, dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (out / "config.json").write_text(json.dumps(config))
    return out


def tiny_recipe(
    data_dir: Path, model: Path, name: str = "tiny", rows: tuple[int, int] = (160, 48), **sections
) -> dict:
    """A recipe dict for the tiny model on toy data written to `data_dir` (train.tsv, dev.tsv: `rows`)."""
    if not (data_dir / "train.tsv").exists():
        write_sentiment_tsv(data_dir / "train.tsv", rows[0], seed=1)
        write_sentiment_tsv(data_dir / "dev.tsv", rows[1], seed=2)
    raw = {
        "name": name,
        "registered_model": f"{name}-classifier",
        "data": {
            "train": "train.tsv",
            "validation": "dev.tsv",
            "text_column": "sentence",
            "labels": ["neg", "pos"],
        },
        "model": {"base": str(model), "max_length": 32},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]},
        "train": {"epochs": 6, "batch_size": 16, "learning_rate": 1e-2, "log_every": 5},
        "export": {"max_accuracy_drop": 1.0, "min_agreement": 0.0},
        "serve": {"bento_name": f"{name}-bento"},
    }
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values if isinstance(values, dict) else values
    return raw


def task_states(flow_run_id, expected: set[str], timeout: float = 30.0) -> dict[str, str]:
    """Task name -> state name of one flow run, as the Prefect API records them. Task states reach the API
    asynchronously (through events), so wait until every expected task has a final state."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client

    async def read() -> dict[str, str]:
        async with get_client() as api:
            runs = await api.read_task_runs()
        return {
            r.name.rsplit("-", 1)[0]: r.state.name
            for r in runs
            if r.flow_run_id == flow_run_id and r.state is not None and r.state.is_final()
        }

    deadline = time.monotonic() + timeout
    while True:
        states = asyncio.run(read())
        if set(states) >= expected or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer and chat template (the packaged GGUF, converted once per cache dir)."""
    from transformers import AutoTokenizer

    from llmpath.sources import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("packaged:smollm2-135m-instruct").path)


@pytest.fixture
def tiny_llama(smollm2_tokenizer):
    """A 2-layer, 32-dim Llama built from a config (random init) over SmolLM2's vocabulary."""
    return make_tiny_llama(smollm2_tokenizer)


def make_tiny_llama(tokenizer, hidden: int = 32):
    """`hidden` 64 or more for bitsandbytes 4-bit on CPU (it quantizes in blocks of 64 input features)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=0.2,  # embeddings big enough that a 32-dim model can put weight on one token
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)
